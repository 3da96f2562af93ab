//! Task lifecycle series no cgroup file holds: how long launches take (RunTask accepted →
//! every essential container RUNNING) and why tasks stop. Fed by following the engine's
//! changes; like every Prometheus counter they start again with each berthd.

use std::collections::HashSet;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::engine::{Change, Engine, Task};

/// Launches take well under a second on metal and tens of seconds under emulation.
const LAUNCH_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Which tasks' launch and stop this berthd has counted, so a change seen twice counts once.
#[derive(Debug, Default)]
pub struct Ledger {
    launched: HashSet<String>,
    stopped: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Launched { seconds: f64 },
    Stopped { reason: &'static str },
}

impl Ledger {
    /// Tasks berthd already had when it started: their launch and stop are not news.
    pub fn known(&mut self, task: &Task) {
        if task.is_stopped() {
            self.stopped.insert(task.id.clone());
        } else if task.started_at.is_some() {
            self.launched.insert(task.id.clone());
        }
    }

    /// A task berth forgot: nothing of it is news any more, and nothing of it is kept.
    pub fn forget(&mut self, id: &str) {
        self.launched.remove(id);
        self.stopped.remove(id);
    }

    /// What a task's current state adds to the counts. A task seen only once it is STOPPED
    /// still counts its launch when it ran.
    pub fn events(&mut self, task: &Task) -> Vec<Event> {
        if self.stopped.contains(&task.id) {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(started) = task.started_at {
            if self.launched.insert(task.id.clone()) {
                let us = started.saturating_sub(task.created_at);
                out.push(Event::Launched {
                    seconds: us as f64 / 1e6,
                });
            }
        }
        if task.is_stopped() {
            self.launched.remove(&task.id);
            self.stopped.insert(task.id.clone());
            out.push(Event::Stopped {
                reason: task.stop_code.map_or("Unknown", |c| c.as_str()),
            });
        }
        out
    }
}

#[derive(Clone)]
pub struct Lifecycle {
    launch: Histogram,
    stops: IntCounterVec,
}

impl Lifecycle {
    pub fn new(registry: &Registry) -> Result<Lifecycle, prometheus::Error> {
        let launch = Histogram::with_opts(
            HistogramOpts::new(
                "berth_task_launch_duration_seconds",
                "Time from RunTask accepted to every container of the task RUNNING.",
            )
            .buckets(LAUNCH_BUCKETS.to_vec()),
        )?;
        let stops = IntCounterVec::new(
            Opts::new(
                "berth_task_stops_total",
                "Tasks that reached STOPPED, by stop code.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(launch.clone()))?;
        registry.register(Box::new(stops.clone()))?;
        Ok(Lifecycle { launch, stops })
    }

    fn record(&self, event: &Event) {
        match event {
            Event::Launched { seconds } => self.launch.observe(*seconds),
            Event::Stopped { reason } => self.stops.with_label_values(&[reason]).inc(),
        }
    }

    /// Follows the engine until it goes away, counting each task's launch and stop.
    pub async fn follow(self, engine: Engine) {
        let mut changes = engine.subscribe();
        let mut ledger = Ledger::default();
        for t in engine.tasks(true) {
            ledger.known(&t);
        }
        loop {
            let id = match changes.recv().await {
                Ok(Change::TaskAdded(id) | Change::TaskChanged(id)) => id,
                Ok(Change::TaskRemoved(id)) => {
                    ledger.forget(&id);
                    continue;
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "metrics fell behind the engine's changes");
                    continue;
                }
                Err(_) => return,
            };
            if let Ok(task) = engine.task(&id) {
                for e in ledger.events(&task) {
                    self.record(&e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Status, StopCode};

    fn task(id: &str) -> Task {
        let def = crate::spec::parse(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"busybox","memory":8}]}"#,
        )
        .unwrap()
        .definition;
        Task::new(id.into(), "f:1".into(), &def, 1_000_000)
    }

    #[test]
    fn a_launch_counts_once_with_its_duration() {
        let mut l = Ledger::default();
        let mut t = task("a");
        assert!(l.events(&t).is_empty());
        t.last_status = Status::Running;
        t.started_at = Some(3_500_000);
        assert_eq!(l.events(&t), vec![Event::Launched { seconds: 2.5 }]);
        assert!(l.events(&t).is_empty(), "the same state seen twice");
    }

    #[test]
    fn a_stop_counts_once_by_its_code_and_a_task_seen_stopped_counts_its_launch() {
        let mut l = Ledger::default();
        let mut t = task("b");
        t.started_at = Some(2_000_000);
        t.last_status = Status::Stopped;
        t.stop_code = Some(StopCode::EssentialContainerExited);
        assert_eq!(
            l.events(&t),
            vec![
                Event::Launched { seconds: 1.0 },
                Event::Stopped {
                    reason: "EssentialContainerExited"
                }
            ]
        );
        assert!(l.events(&t).is_empty());
    }

    #[test]
    fn a_task_that_never_ran_counts_no_launch() {
        let mut l = Ledger::default();
        let mut t = task("c");
        t.last_status = Status::Stopped;
        t.stop_code = Some(StopCode::TaskFailedToStart);
        assert_eq!(
            l.events(&t),
            vec![Event::Stopped {
                reason: "TaskFailedToStart"
            }]
        );
    }

    #[test]
    fn tasks_known_at_start_are_not_news() {
        let mut l = Ledger::default();
        let mut running = task("d");
        running.started_at = Some(2_000_000);
        l.known(&running);
        assert!(l.events(&running).is_empty());
        running.last_status = Status::Stopped;
        running.stop_code = Some(StopCode::UserInitiated);
        assert_eq!(
            l.events(&running),
            vec![Event::Stopped {
                reason: "UserInitiated"
            }]
        );
    }
}
