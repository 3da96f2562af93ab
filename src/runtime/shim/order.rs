//! When a container may start: its `dependsOn` conditions against what the shim knows of the
//! others, and the reason the task fails when one can no longer hold or misses `startTimeout`.
//! Pure: the shim passes in what it has seen and how long the container has waited.

use crate::runtime::report::HealthStatus;
use crate::spec::order::{Condition, Dependency};

/// What the shim knows of one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    NotStarted,
    Running { health: Option<HealthStatus> },
    Exited { code: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    Start,
    /// The task fails: the reason names the container and its dependency.
    Fail(String),
}

/// Whether `dep` holds, cannot hold any more (with why), or may still.
fn check(dep: &Dependency, p: Progress) -> Result<bool, String> {
    use Condition::*;
    match (dep.condition, p) {
        (_, Progress::NotStarted) => Ok(false),
        (Start, _) => Ok(true),
        (Complete, Progress::Exited { .. }) => Ok(true),
        (Success, Progress::Exited { code: 0 }) => Ok(true),
        (Success, Progress::Exited { code }) => Err(format!("exited with code {code}")),
        (Healthy, Progress::Running { health }) => match health {
            Some(HealthStatus::Healthy) => Ok(true),
            Some(HealthStatus::Unhealthy) => Err("is UNHEALTHY".into()),
            _ => Ok(false),
        },
        (Healthy, Progress::Exited { code }) => {
            Err(format!("exited with code {code} before it was HEALTHY"))
        }
        (Complete | Success, Progress::Running { .. }) => Ok(false),
    }
}

/// The verdict for container `name`, waiting on `deps` for `waited_secs` of its
/// `timeout_secs`; `progress_of` tells what became of each other container.
pub fn verdict(
    name: &str,
    deps: &[Dependency],
    progress_of: impl Fn(&str) -> Progress,
    waited_secs: u64,
    timeout_secs: u64,
) -> Verdict {
    let mut all = true;
    for d in deps {
        match check(d, progress_of(&d.container)) {
            Ok(true) => {}
            Ok(false) => {
                all = false;
                if waited_secs >= timeout_secs {
                    return Verdict::Fail(format!(
                        "DependencyTimeout: container {name}: dependency {} did not reach {} within {timeout_secs} s (startTimeout)",
                        d.container,
                        d.condition.as_str()
                    ));
                }
            }
            Err(why) => {
                return Verdict::Fail(format!(
                    "DependencyFailed: container {name}: dependency {} {why} (condition {})",
                    d.container,
                    d.condition.as_str()
                ))
            }
        }
    }
    if all {
        Verdict::Start
    } else {
        Verdict::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(c: &str, condition: Condition) -> Dependency {
        Dependency {
            container: c.into(),
            condition,
        }
    }

    #[test]
    fn each_condition_waits_then_holds() {
        let run = Progress::Running { health: None };
        let cases = [
            (Condition::Start, run, Verdict::Start),
            (Condition::Complete, run, Verdict::Wait),
            (
                Condition::Complete,
                Progress::Exited { code: 3 },
                Verdict::Start,
            ),
            (
                Condition::Success,
                Progress::Exited { code: 0 },
                Verdict::Start,
            ),
            (Condition::Healthy, run, Verdict::Wait),
            (
                Condition::Healthy,
                Progress::Running {
                    health: Some(HealthStatus::Healthy),
                },
                Verdict::Start,
            ),
            (Condition::Start, Progress::NotStarted, Verdict::Wait),
        ];
        for (cond, p, want) in cases {
            assert_eq!(
                verdict("b", &[dep("a", cond)], |_| p, 0, 180),
                want,
                "{cond:?} {p:?}"
            );
        }
    }

    #[test]
    fn a_condition_that_can_no_longer_hold_fails_at_once_naming_it() {
        let v = verdict(
            "b",
            &[dep("a", Condition::Success)],
            |_| Progress::Exited { code: 2 },
            0,
            180,
        );
        assert_eq!(
            v,
            Verdict::Fail("DependencyFailed: container b: dependency a exited with code 2 (condition SUCCESS)".into())
        );
        let unhealthy = Progress::Running {
            health: Some(HealthStatus::Unhealthy),
        };
        assert!(
            matches!(verdict("b", &[dep("a", Condition::Healthy)], |_| unhealthy, 0, 180), Verdict::Fail(r) if r.contains("a is UNHEALTHY"))
        );
    }

    #[test]
    fn start_timeout_fails_the_wait_and_every_dependency_must_hold() {
        let progress = |n: &str| match n {
            "a" => Progress::Running { health: None },
            _ => Progress::NotStarted,
        };
        let deps = [dep("a", Condition::Start), dep("c", Condition::Start)];
        assert_eq!(verdict("b", &deps, progress, 9, 10), Verdict::Wait);
        assert_eq!(
            verdict("b", &deps, progress, 10, 10),
            Verdict::Fail("DependencyTimeout: container b: dependency c did not reach START within 10 s (startTimeout)".into())
        );
        assert_eq!(verdict("b", &[], progress, 0, 10), Verdict::Start);
    }
}
