//! `berthctl wait`: block until tasks reach RUNNING or STOPPED, woken by the daemon's
//! TaskStateChanged signals rather than by polling, as `aws ecs wait tasks-running` is used in
//! scripts. Waiting for RUNNING fails at once when the task stops first, naming why.

use std::time::{Duration, Instant};

use berth::dbus::client::ManagerProxy;
use futures_util::StreamExt;
use serde_json::Value;

use crate::tasks::describe;

/// The status waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    #[value(name = "RUNNING", alias = "running")]
    Running,
    #[value(name = "STOPPED", alias = "stopped")]
    Stopped,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Running => "RUNNING",
            Target::Stopped => "STOPPED",
        }
    }
}

/// Where a task stands against the target.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Reached,
    NotYet,
    /// It is past the target's point and cannot come back (a task never restarts).
    Never,
}

fn verdict(target: Target, last_status: &str) -> Verdict {
    match (target, last_status) {
        (Target::Running, "RUNNING") | (Target::Stopped, "STOPPED") => Verdict::Reached,
        (Target::Running, "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED") => {
            Verdict::Never
        }
        _ => Verdict::NotYet,
    }
}

/// Waits until every task in `ids` has reached `target`; returns their descriptions in order.
/// Subscribes before the first look, so no change falls between; looks again every 5 s besides
/// in case the bus drops a signal.
pub async fn until(
    m: &ManagerProxy<'_>,
    ids: &[String],
    target: Target,
    timeout: Option<Duration>,
) -> anyhow::Result<Vec<Value>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut signals = m.receive_task_state_changed().await?;
    loop {
        let mut tasks = Vec::with_capacity(ids.len());
        let mut pending = None;
        for id in ids {
            let v = describe(m, id).await?;
            let last = v["lastStatus"].as_str().unwrap_or("").to_string();
            match verdict(target, &last) {
                Verdict::Reached => {}
                Verdict::NotYet => pending = pending.or(Some((id.clone(), last))),
                Verdict::Never => anyhow::bail!(
                    "task {id} is {last} and will not be {}: {}",
                    target.name(),
                    v["stoppedReason"].as_str().unwrap_or("no reason recorded")
                ),
            }
            tasks.push(v);
        }
        let Some((id, last)) = pending else {
            return Ok(tasks);
        };
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(5),
        };
        if left.is_zero() {
            anyhow::bail!(
                "task {id} is still {last} after {} s, not yet {}",
                timeout.map_or(0, |t| t.as_secs()),
                target.name()
            );
        }
        let changed = async {
            while let Some(s) = signals.next().await {
                if s.args().is_ok_and(|a| ids.iter().any(|i| *i == a.id)) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(left.min(Duration::from_secs(5)), changed).await;
    }
}

/// The command: one line per task (`ID STATUS`), or the descriptions as JSON.
pub async fn run(
    m: &ManagerProxy<'_>,
    ids: Vec<String>,
    target: Target,
    timeout_secs: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let tasks = until(m, &ids, target, timeout_secs.map(Duration::from_secs)).await?;
    if json {
        println!("{}", Value::from(tasks));
    } else {
        for (id, t) in ids.iter().zip(&tasks) {
            println!("{id} {}", t["lastStatus"].as_str().unwrap_or(""));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_is_reached_only_at_running_and_never_once_the_task_winds_down() {
        for s in ["PROVISIONING", "PENDING", "ACTIVATING"] {
            assert_eq!(verdict(Target::Running, s), Verdict::NotYet, "{s}");
        }
        assert_eq!(verdict(Target::Running, "RUNNING"), Verdict::Reached);
        for s in ["DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"] {
            assert_eq!(verdict(Target::Running, s), Verdict::Never, "{s}");
        }
    }

    #[test]
    fn stopped_waits_through_every_other_status() {
        for s in ["PENDING", "RUNNING", "STOPPING"] {
            assert_eq!(verdict(Target::Stopped, s), Verdict::NotYet, "{s}");
        }
        assert_eq!(verdict(Target::Stopped, "STOPPED"), Verdict::Reached);
    }
}
