//! The stopped tasks berth remembers, and forgetting them past the retention policy: each
//! forgotten task leaves the host first (its directory, with its upper layers and logs), then
//! the store and the engine, then the faces.

use std::collections::BTreeSet;
use std::time::Duration;

use super::retention::{self, Retention, Stopped};
use super::{Change, Engine};
use crate::clock::now_us;

/// What the faces say of how far back the history goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub retention: Retention,
    /// When the oldest stopped task still kept stopped (µs since the epoch).
    pub oldest_stopped_at: Option<u64>,
}

impl Engine {
    /// The retention policy (the defaults without).
    pub fn with_retention(mut self, retention: Retention) -> Engine {
        self.retention = retention;
        self
    }

    fn stopped(&self) -> (Vec<Stopped>, BTreeSet<String>) {
        let state = self.lock();
        let stopped = state
            .tasks
            .values()
            .filter(|t| t.is_stopped())
            .map(|t| Stopped {
                id: t.id.clone(),
                stopped_at: t.stopped_at.unwrap_or(t.created_at),
            })
            .collect();
        let held = state
            .services
            .values()
            .flat_map(|s| s.tasks.iter().cloned())
            .collect();
        (stopped, held)
    }

    pub fn history(&self) -> History {
        History {
            retention: self.retention,
            oldest_stopped_at: retention::oldest(&self.stopped().0),
        }
    }

    /// Forgets the stopped tasks the policy no longer keeps; returns their ids. The host's
    /// part goes first and the record last: a task whose directory stays, or whose record the
    /// store cannot delete, is tried again at the next pass, and no directory is left
    /// without a record that leads to it.
    pub fn forget_expired(&self, now: u64) -> Vec<String> {
        let (stopped, held) = self.stopped();
        let mut gone = Vec::new();
        for id in retention::expired(&stopped, &held, now, &self.retention) {
            if !self.runtime.forget(&id) {
                continue;
            }
            {
                let mut state = self.lock();
                if let Err(e) = state.store.delete_task(&id) {
                    tracing::warn!(task = %id, error = %e, "stopped task not forgotten");
                    continue;
                }
                state.tasks.remove(&id);
            }
            tracing::info!(task = %id, "stopped task forgotten (past its retention)");
            self.emit(Change::TaskRemoved(id.clone()));
            gone.push(id);
        }
        gone
    }

    /// Forgets expired stopped tasks, then removes pulled images no longer used, every `every`
    /// until berthd stops; the file work runs off the async workers.
    pub async fn keep_history(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let engine = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || {
                engine.forget_expired(now_us());
                engine.clean_images(now_us() / 1_000_000);
            })
            .await
            {
                tracing::warn!(error = %e, "forgetting stopped tasks failed");
            }
        }
    }
}
