//! How long stopped tasks are kept: ECS keeps a stopped task about an hour; berth keeps each
//! for `stopped_task_retention_secs` and at most `stopped_task_max` of them (the oldest go
//! first), then forgets it: its record, its directory (upper layers, logs) and its D-Bus
//! object. The journal keeps the history of its logs.
//!
//! Pure: the stopped tasks, the clock and the policy in, the tasks to forget out.

use std::collections::BTreeSet;

/// How many stopped tasks, and for how long, berth keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age_us: u64,
    pub max_count: usize,
}

impl Default for Retention {
    /// A day and a thousand tasks: longer than ECS's hour, since one host's operator looks back
    /// at a task's reason and logs after the fact.
    fn default() -> Self {
        Retention {
            max_age_us: 24 * 3600 * 1_000_000,
            max_count: 1000,
        }
    }
}

/// One stopped task as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub id: String,
    pub stopped_at: u64,
}

/// The stopped tasks to forget now: every one older than the age limit, and the oldest past
/// the count. A task in `held` (a service has not yet accounted for its stop) stays and counts.
pub fn expired(
    stopped: &[Stopped],
    held: &BTreeSet<String>,
    now: u64,
    r: &Retention,
) -> Vec<String> {
    let mut by_age: Vec<&Stopped> = stopped.iter().collect();
    // Newest first; the id breaks ties so the answer does not depend on the input's order.
    by_age.sort_by(|a, b| b.stopped_at.cmp(&a.stopped_at).then(a.id.cmp(&b.id)));
    by_age
        .iter()
        .enumerate()
        .filter(|(i, t)| {
            let too_old = now.saturating_sub(t.stopped_at) > r.max_age_us;
            (too_old || *i >= r.max_count) && !held.contains(&t.id)
        })
        .map(|(_, t)| t.id.clone())
        .collect()
}

/// When the oldest stopped task still kept stopped, for "history since" in the faces.
pub fn oldest(stopped: &[Stopped]) -> Option<u64> {
    stopped.iter().map(|t| t.stopped_at).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn t(id: &str, at_s: u64) -> Stopped {
        Stopped {
            id: id.into(),
            stopped_at: at_s * S,
        }
    }

    #[test]
    fn tasks_past_the_age_go_and_younger_ones_stay() {
        let r = Retention {
            max_age_us: 60 * S,
            max_count: 10,
        };
        let stopped = [t("old", 0), t("edge", 40), t("young", 90)];
        assert_eq!(expired(&stopped, &BTreeSet::new(), 100 * S, &r), ["old"]);
    }

    #[test]
    fn past_the_count_the_oldest_go_first() {
        let r = Retention {
            max_age_us: 3600 * S,
            max_count: 2,
        };
        let stopped = [t("b", 20), t("a", 10), t("d", 40), t("c", 30)];
        let mut gone = expired(&stopped, &BTreeSet::new(), 50 * S, &r);
        gone.sort();
        assert_eq!(gone, ["a", "b"]);
    }

    #[test]
    fn a_task_a_service_still_holds_is_kept() {
        let r = Retention {
            max_age_us: 10 * S,
            max_count: 0,
        };
        let held: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(expired(&[t("a", 0), t("b", 0)], &held, 100 * S, &r), ["b"]);
    }

    #[test]
    fn the_oldest_kept_is_the_history_start() {
        assert_eq!(oldest(&[t("a", 5), t("b", 3)]), Some(3 * S));
        assert_eq!(oldest(&[]), None);
    }
}
