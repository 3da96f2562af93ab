//! A container's health, judged as Docker and ECS judge it: a check every `interval`, one
//! that passes makes it HEALTHY, `retries` failures in a row make it UNHEALTHY, and failures
//! within `startPeriod` of the start do not count. Pure: times are milliseconds of the shim's
//! clock, passed in.

use crate::clock::now_us;
use crate::runtime::report::{Health, HealthStatus, StatusDir};
use crate::spec::order::HealthCheck;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    pub status: HealthStatus,
    pub failing_streak: u64,
    pub last_failure: Option<String>,
    started_ms: u64,
    next_ms: u64,
    interval_ms: u64,
    timeout_ms: u64,
    retries: u64,
    start_period_ms: u64,
    /// Once a check passes, the start period is over.
    passed_once: bool,
}

impl HealthState {
    /// The first check runs one interval after the start, as Docker's does.
    pub fn new(check: &HealthCheck, started_ms: u64) -> HealthState {
        let interval_ms = check.interval_secs * 1000;
        HealthState {
            status: HealthStatus::Unknown,
            failing_streak: 0,
            last_failure: None,
            started_ms,
            next_ms: started_ms + interval_ms,
            interval_ms,
            timeout_ms: check.timeout_secs * 1000,
            retries: check.retries,
            start_period_ms: check.start_period_secs * 1000,
            passed_once: false,
        }
    }

    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_ms
    }

    /// When a check begun at `now_ms` is given up as timed out.
    pub fn deadline(&self, now_ms: u64) -> u64 {
        now_ms + self.timeout_ms
    }

    /// Records a check that ended at `now_ms`: `Err` carries why it failed. Returns whether
    /// the status (or the failure streak) changed, which the shim reports.
    pub fn record(&mut self, result: Result<(), String>, now_ms: u64) -> bool {
        let before = (self.status, self.failing_streak);
        self.next_ms = now_ms + self.interval_ms;
        match result {
            Ok(()) => {
                self.passed_once = true;
                self.failing_streak = 0;
                self.last_failure = None;
                self.status = HealthStatus::Healthy;
            }
            Err(why) => {
                self.last_failure = Some(why);
                let starting = !self.passed_once && now_ms < self.started_ms + self.start_period_ms;
                if !starting {
                    self.failing_streak += 1;
                    if self.failing_streak >= self.retries {
                        self.status = HealthStatus::Unhealthy;
                    }
                }
            }
        }
        (self.status, self.failing_streak) != before
    }
}

/// Writes container `name`'s health as `state` has it, for berthd; a failure is only logged,
/// as the next change writes it again.
pub fn report(status: &StatusDir, name: &str, state: &HealthState) {
    let h = Health {
        status: state.status,
        failing_streak: state.failing_streak,
        last_failure: state.last_failure.clone(),
        at: now_us(),
    };
    if let Err(e) = status.health(name, &h) {
        eprintln!("berth-shim: cannot record the health of {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u64, start_period_secs: u64) -> HealthCheck {
        HealthCheck {
            command: vec!["true".into()],
            interval_secs: 5,
            timeout_secs: 2,
            retries,
            start_period_secs,
        }
    }

    #[test]
    fn one_pass_is_healthy_and_retries_failures_in_a_row_unhealthy() {
        let mut h = HealthState::new(&check(3, 0), 1_000);
        assert!(!h.due(5_999) && h.due(6_000));
        assert_eq!(h.deadline(6_000), 8_000);
        assert!(h.record(Ok(()), 6_000));
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(!h.due(10_999) && h.due(11_000));
        h.record(Err("exit 1".into()), 11_000);
        h.record(Err("exit 1".into()), 16_000);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 2));
        assert!(h.record(Err("timed out after 2 s".into()), 21_000));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.last_failure.as_deref(), Some("timed out after 2 s"));
        h.record(Ok(()), 26_000);
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Healthy, 0));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_until_a_pass() {
        let mut h = HealthState::new(&check(1, 12), 0);
        assert!(!h.record(Err("exit 1".into()), 5_000));
        assert!(!h.record(Err("exit 1".into()), 10_000));
        assert_eq!((h.status, h.failing_streak), (HealthStatus::Unknown, 0));
        h.record(Err("exit 1".into()), 15_000);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        // A pass inside the period ends it: the next failure counts.
        let mut h = HealthState::new(&check(1, 300), 0);
        h.record(Ok(()), 5_000);
        h.record(Err("exit 1".into()), 10_000);
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }
}
