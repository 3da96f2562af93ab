//! What the shim takes from a microVM's agent. The guest runs the task's code, so its agent
//! may say anything: every message is checked against the task's plan and against what the
//! shim has seen and asked, before it reaches a status file, a log or a metric. A message that
//! fails is dropped (and counted by the caller).

use std::collections::BTreeSet;

use crate::vm::protocol::{AgentMessage, Usage};

/// What the shim knows of the task's containers when a message comes.
pub(super) struct Known<'a> {
    /// Sent to the agent to run (every one a container of the plan).
    pub requested: &'a BTreeSet<String>,
    pub started: &'a BTreeSet<String>,
    pub ended: &'a BTreeSet<String>,
    /// Containers whose health check the agent was asked to run and has not answered.
    pub asked: &'a BTreeSet<String>,
}

/// At most this many usage entries are taken from one answer (a task has at most 10
/// containers in ECS; the rest is a guest inflating the metrics).
const MAX_USAGE: usize = 64;

/// Why `msg` is refused, or nothing when it may be acted on.
pub(super) fn refusal(msg: &AgentMessage, k: &Known) -> Option<String> {
    let open = |n: &String| k.requested.contains(n) && !k.ended.contains(n);
    let ok = match msg {
        AgentMessage::Started { name, .. } => open(name) && !k.started.contains(name),
        AgentMessage::Failed { name, .. } => open(name),
        AgentMessage::Exited { name, .. } => open(name) && k.started.contains(name),
        // Output may trail its container's exit report.
        AgentMessage::Output { name, .. } => k.started.contains(name),
        AgentMessage::Checked { name, .. } => k.asked.contains(name),
        AgentMessage::Pong { usage, .. } => usage.len() <= MAX_USAGE,
        AgentMessage::PoweringOff => true,
        AgentMessage::Hello { .. } | AgentMessage::Refused { .. } => false,
    };
    (!ok).then(|| describe(msg))
}

/// The usage of containers that ran, and nothing else, once each.
pub(super) fn usage_of_started(usage: Vec<Usage>, started: &BTreeSet<String>) -> Vec<Usage> {
    let mut seen = BTreeSet::new();
    usage
        .into_iter()
        .filter(|u| started.contains(&u.name) && seen.insert(u.name.clone()))
        .collect()
}

/// The message in a few words, its name quoted and cut, so a log line cannot be forged with it.
fn describe(msg: &AgentMessage) -> String {
    let cut = |n: &str| -> String { n.chars().take(64).collect() };
    match msg {
        AgentMessage::Started { name, .. } => format!("started for {:?}", cut(name)),
        AgentMessage::Failed { name, .. } => format!("failed for {:?}", cut(name)),
        AgentMessage::Exited { name, .. } => format!("exited for {:?}", cut(name)),
        AgentMessage::Output { name, .. } => format!("output for {:?}", cut(name)),
        AgentMessage::Checked { name, .. } => format!("unasked check result for {:?}", cut(name)),
        AgentMessage::Pong { usage, .. } => format!("usage of {} containers", usage.len()),
        AgentMessage::PoweringOff => "powering off".into(),
        AgentMessage::Hello { .. } => "a second hello".into(),
        AgentMessage::Refused { .. } => "a refusal after the hello".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn started(name: &str) -> AgentMessage {
        AgentMessage::Started {
            name: name.into(),
            pid: 7,
        }
    }

    fn exited(name: &str) -> AgentMessage {
        AgentMessage::Exited {
            name: name.into(),
            code: 0,
            oom: false,
        }
    }

    #[test]
    fn names_outside_the_plan_are_refused_whatever_the_message() {
        let (req, none) = (set(&["web"]), set(&[]));
        let k = Known {
            requested: &req,
            started: &req,
            ended: &none,
            asked: &req,
        };
        for name in ["../../etc/x", "", "web/../../x", "other"] {
            let msgs = [
                started(name),
                exited(name),
                AgentMessage::Failed {
                    name: name.into(),
                    reason: "r".into(),
                },
                AgentMessage::Output {
                    name: name.into(),
                    stderr: false,
                    data: "x".into(),
                },
                AgentMessage::Checked {
                    name: name.into(),
                    failure: None,
                },
            ];
            for m in msgs {
                assert!(refusal(&m, &k).is_some(), "{m:?} taken");
            }
        }
    }

    #[test]
    fn each_container_starts_once_and_ends_once_after_its_start() {
        let (req, none, web) = (set(&["web", "db"]), set(&[]), set(&["web"]));
        let fresh = Known {
            requested: &req,
            started: &none,
            ended: &none,
            asked: &none,
        };
        assert_eq!(refusal(&started("web"), &fresh), None);
        assert!(
            refusal(&exited("web"), &fresh).is_some(),
            "an exit before the start"
        );
        let running = Known {
            started: &web,
            ..fresh
        };
        assert!(
            refusal(&started("web"), &running).is_some(),
            "a second start"
        );
        assert_eq!(refusal(&exited("web"), &running), None);
        let ended = Known {
            ended: &web,
            ..running
        };
        assert!(refusal(&exited("web"), &ended).is_some(), "a second exit");
        let late = AgentMessage::Output {
            name: "web".into(),
            stderr: true,
            data: "last words".into(),
        };
        assert_eq!(refusal(&late, &ended), None, "output trailing the exit");
    }

    #[test]
    fn a_check_result_counts_only_when_it_was_asked_for() {
        let (req, none) = (set(&["web"]), set(&[]));
        let passed = AgentMessage::Checked {
            name: "web".into(),
            failure: None,
        };
        let unasked = Known {
            requested: &req,
            started: &req,
            ended: &none,
            asked: &none,
        };
        assert!(refusal(&passed, &unasked).unwrap().contains("unasked"));
        let asked = Known {
            asked: &req,
            ..unasked
        };
        assert_eq!(refusal(&passed, &asked), None);
    }

    #[test]
    fn usage_is_kept_for_started_containers_once_each() {
        let u = |n: &str| Usage {
            name: n.into(),
            cpu_usec: 1,
            memory_bytes: 2,
        };
        let kept = usage_of_started(
            vec![u("web"), u("web"), u("ghost"), u("../x")],
            &set(&["web"]),
        );
        assert_eq!(kept, vec![u("web")]);
        let flood = AgentMessage::Pong {
            seq: 1,
            usage: (0..MAX_USAGE + 1).map(|_| u("web")).collect(),
        };
        let none = set(&[]);
        let k = Known {
            requested: &none,
            started: &none,
            ended: &none,
            asked: &none,
        };
        assert!(refusal(&flood, &k).is_some());
    }

    #[test]
    fn a_refusal_quotes_the_name_so_it_cannot_forge_a_log_line() {
        let none = set(&[]);
        let k = Known {
            requested: &none,
            started: &none,
            ended: &none,
            asked: &none,
        };
        let r = refusal(&started("x\nberth-shim: task stopped"), &k).unwrap();
        assert!(!r.contains('\n'), "{r}");
    }
}
