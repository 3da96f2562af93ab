//! The fields that order a task's containers and judge their health: `dependsOn`,
//! `startTimeout` and `healthCheck`, validated into typed values, and the task-wide checks ECS
//! makes of them (no cycle, COMPLETE/SUCCESS only on non-essential containers, HEALTHY only on
//! a container with a health check).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::model::ContainerDefinition;
use super::walk::{self, join, Report};

/// What a container waits for in another before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Condition {
    /// The other has started.
    Start,
    /// The other has exited, whatever its code.
    Complete,
    /// The other has exited with 0.
    Success,
    /// The other's health check has passed.
    Healthy,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Start => "START",
            Condition::Complete => "COMPLETE",
            Condition::Success => "SUCCESS",
            Condition::Healthy => "HEALTHY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub container: String,
    pub condition: Condition,
}

/// `healthCheck`, with ECS's defaults filled in. `command` is the argv to run: `CMD` gives it
/// as is, `CMD-SHELL` through `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval_secs: u64,
    pub timeout_secs: u64,
    pub retries: u64,
    pub start_period_secs: u64,
}

/// ECS's ranges, as (key, default, min, max).
const HEALTH_NUMBERS: [(&str, u64, u64, u64); 4] = [
    ("interval", 30, 5, 300),
    ("timeout", 5, 2, 60),
    ("retries", 3, 1, 10),
    ("startPeriod", 0, 0, 300),
];

/// The container's `dependsOn`; problems in it are reported by the task's reference checks.
pub fn depends_on(c: &Map<String, Value>, path: &str) -> Vec<Dependency> {
    let mut quiet = Report::default();
    walk::objects(&mut quiet, c, path, "dependsOn")
        .into_iter()
        .filter_map(|(p, d)| {
            let container = walk::string(&mut quiet, d, &p, "containerName")?;
            let condition = match walk::string(&mut quiet, d, &p, "condition")?.as_str() {
                "START" => Condition::Start,
                "COMPLETE" => Condition::Complete,
                "SUCCESS" => Condition::Success,
                "HEALTHY" => Condition::Healthy,
                _ => return None,
            };
            Some(Dependency {
                container,
                condition,
            })
        })
        .collect()
}

pub fn start_timeout(r: &mut Report, c: &Map<String, Value>, path: &str) -> Option<u64> {
    let t = walk::integer(r, c, path, "startTimeout")?;
    if t == 0 {
        r.problem(join(path, "startTimeout"), "must be at least 1 second");
        return None;
    }
    Some(t)
}

pub fn health_check(r: &mut Report, c: &Map<String, Value>, path: &str) -> Option<HealthCheck> {
    let v = walk::get(c, "healthCheck")?;
    let p = join(path, "healthCheck");
    let h = walk::object(r, v, &p)?;
    let command = health_command(r, h, &p);
    let mut numbers = [0u64; 4];
    for (slot, (key, default, min, max)) in numbers.iter_mut().zip(HEALTH_NUMBERS) {
        *slot = match walk::integer(r, h, &p, key) {
            Some(n) if n < min || n > max => {
                r.problem(
                    join(&p, key),
                    format!("{n} is outside {min}..{max} seconds (ECS's range)"),
                );
                default
            }
            Some(n) => n,
            None => default,
        };
    }
    let [interval_secs, timeout_secs, retries, start_period_secs] = numbers;
    Some(HealthCheck {
        command: command?,
        interval_secs,
        timeout_secs,
        retries,
        start_period_secs,
    })
}

fn health_command(r: &mut Report, h: &Map<String, Value>, p: &str) -> Option<Vec<String>> {
    let cp = join(p, "command");
    let Some(list) = walk::strings(r, h, p, "command") else {
        r.problem(
            cp,
            "is required: [\"CMD\", args...] or [\"CMD-SHELL\", \"command\"]",
        );
        return None;
    };
    match list.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")])
        }
        Some((kind, _)) if kind == "NONE" => None,
        _ => {
            r.problem(
                cp,
                "must start with \"CMD\" or \"CMD-SHELL\" followed by the command",
            );
            None
        }
    }
}

/// The checks across containers: every dependency names a container of the task, none forms
/// a cycle, COMPLETE and SUCCESS wait only for non-essential containers (an essential one's
/// exit stops the task), HEALTHY only for one with a health check.
pub fn cross_check(r: &mut Report, containers: &[ContainerDefinition]) {
    let index = |name: &str| containers.iter().position(|c| c.name == name);
    for (i, c) in containers.iter().enumerate() {
        for (j, d) in c.depends_on.iter().enumerate() {
            let p = format!("containerDefinitions[{i}].dependsOn[{j}]");
            let Some(target) = index(&d.container).map(|k| &containers[k]) else {
                continue; // reported with the other references
            };
            if target.name == c.name {
                r.problem(
                    join(&p, "containerName"),
                    "a container cannot depend on itself",
                );
            }
            match d.condition {
                Condition::Complete | Condition::Success if target.essential => r.problem(
                    join(&p, "condition"),
                    format!(
                        "{} cannot be set on essential container \"{}\": its exit stops the task",
                        d.condition.as_str(),
                        target.name
                    ),
                ),
                Condition::Healthy if target.health_check.is_none() => r.problem(
                    join(&p, "condition"),
                    format!("HEALTHY needs a healthCheck on \"{}\"", target.name),
                ),
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(containers) {
        let first = index(&cycle[0]).unwrap_or(0);
        r.problem(
            format!("containerDefinitions[{first}].dependsOn"),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// The first cycle of `dependsOn`, as names from a container back to itself.
pub fn find_cycle(containers: &[ContainerDefinition]) -> Option<Vec<String>> {
    // 0: unvisited, 1: on the current path, 2: done.
    let mut mark = vec![0u8; containers.len()];
    let mut path = Vec::new();
    fn visit(
        i: usize,
        cs: &[ContainerDefinition],
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        mark[i] = 1;
        path.push(i);
        for d in &cs[i].depends_on {
            let Some(k) = cs.iter().position(|c| c.name == d.container) else {
                continue;
            };
            if k == i {
                continue; // refused on its own
            }
            if mark[k] == 1 {
                let from = path.iter().position(|&p| p == k).unwrap_or(0);
                let mut names: Vec<String> =
                    path[from..].iter().map(|&p| cs[p].name.clone()).collect();
                names.push(cs[k].name.clone());
                return Some(names);
            }
            if mark[k] == 0 {
                if let Some(c) = visit(k, cs, mark, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        mark[i] = 2;
        None
    }
    (0..containers.len()).find_map(|i| {
        if mark[i] == 0 {
            visit(i, containers, &mut mark, &mut path)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests;
