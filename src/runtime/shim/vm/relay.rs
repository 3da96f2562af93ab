//! What a microVM's agent reports beyond starts and exits: container output, written to the
//! container's log file and the journal as a container task's shim writes it, and the
//! heartbeat that tells a live agent from a silent one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::runtime::plan::Plan;
use crate::runtime::shim::logs::{self, Journal, Lines};

/// Container output, by container and stream.
pub(super) struct Output {
    journal: Journal,
    files: BTreeMap<String, logs::LogFile>,
    lines: BTreeMap<(String, bool), Lines>,
}

impl Output {
    pub fn new(plan: &Plan) -> Output {
        Output {
            journal: Journal::open(&plan.task_id, &plan.family),
            files: BTreeMap::new(),
            lines: BTreeMap::new(),
        }
    }

    /// Appends what container `name` wrote; a container the plan does not know is ignored.
    pub fn write(&mut self, plan: &Plan, name: &str, stderr: bool, data: &str) {
        let Some(c) = plan.containers.iter().find(|c| c.name == name) else {
            return;
        };
        if !self.files.contains_key(name) {
            match logs::LogFile::open(&c.log, plan.log_max_bytes) {
                Ok(f) => {
                    self.files.insert(name.to_string(), f);
                }
                Err(e) => {
                    eprintln!("berth-shim: log {}: {e}", c.log.display());
                    return;
                }
            }
        }
        let Some(file) = self.files.get_mut(name) else {
            return;
        };
        self.lines
            .entry((name.to_string(), stderr))
            .or_insert_with(|| Lines::new(name, stderr))
            .feed(data.as_bytes(), file, &self.journal);
    }

    /// Sends the unfinished last lines of container `name` (it has ended).
    pub fn flush(&mut self, name: &str) {
        for stderr in [false, true] {
            if let Some(l) = self.lines.get_mut(&(name.to_string(), stderr)) {
                l.flush(&self.journal);
            }
        }
    }
}

/// The shim pings the agent every `interval`; anything the agent says counts as an answer.
/// Silent past the limit the shim gives, the agent is taken for lost. Times are passed in.
pub(super) struct Heartbeat {
    interval: Duration,
    last_heard: Instant,
    next_ping: Instant,
    seq: u64,
}

impl Heartbeat {
    pub fn new(now: Instant, interval: Duration) -> Heartbeat {
        Heartbeat {
            interval,
            last_heard: now,
            next_ping: now + interval,
            seq: 0,
        }
    }

    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The sequence number of a ping to send now, if one is due.
    pub fn ping_due(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_ping {
            return None;
        }
        self.next_ping = now + self.interval;
        self.seq += 1;
        Some(self.seq)
    }

    /// How long the agent has been silent, once that is past `limit`.
    pub fn silent(&self, now: Instant, limit: Duration) -> Option<Duration> {
        let quiet = now.saturating_duration_since(self.last_heard);
        (quiet > limit).then_some(quiet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_come_at_the_interval_and_silence_past_the_timeout_is_loss() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut h = Heartbeat::new(t0, s(5));
        assert_eq!(h.ping_due(t0 + s(1)), None);
        assert_eq!(h.ping_due(t0 + s(5)), Some(1));
        assert_eq!(h.ping_due(t0 + s(6)), None);
        assert_eq!(h.ping_due(t0 + s(10)), Some(2));
        assert_eq!(h.silent(t0 + s(60), s(60)), None);
        h.heard(t0 + s(50));
        assert_eq!(h.silent(t0 + s(100), s(60)), None);
        assert_eq!(h.silent(t0 + s(111), s(60)), Some(s(61)));
        assert_eq!(
            h.silent(t0 + s(111), s(300)),
            None,
            "a longer limit while busy"
        );
    }
}
