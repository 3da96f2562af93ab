//! Bringing the engine back when berthd starts: definitions and tasks from the store; every
//! task not yet stopped taken back through its backend (re-adopted, or STOPPED with why it is
//! gone, with the exit codes of containers that ended while berthd was down); the books
//! charged with exactly what still runs; and whatever a crash left on the host cleared.

use std::collections::{BTreeMap, BTreeSet};

use super::definitions::Registry;
use super::task::{Found, Task};
use crate::capacity::Books;
use crate::runtime::{Runtime, Seen};
use crate::spec;
use crate::store::{Store, StoreError};

/// The `meta` key of the boot berthd last ran in.
const BOOT_ID: &str = "boot_id";

pub(super) fn definitions(store: &Store) -> Result<Registry, StoreError> {
    let mut registry = Registry::default();
    for stored in store.definitions()? {
        match spec::parse(&stored.json) {
            Ok(v) => {
                registry.restore(stored.revision, stored.active, v);
            }
            // A definition a newer validation refuses stays in the store, untouched.
            Err(e) => tracing::warn!(
                task_definition = %format!("{}:{}", stored.family, stored.revision),
                error = %e,
                "stored task definition no longer validates; not loaded"
            ),
        }
    }
    Ok(registry)
}

/// Every stored service; one the store cannot read back is left there, untouched.
pub(super) fn services(
    store: &Store,
) -> Result<BTreeMap<String, crate::service::Service>, StoreError> {
    let mut out = BTreeMap::new();
    for (name, json) in store.services()? {
        match serde_json::from_str(&json) {
            Ok(s) => {
                out.insert(name, s);
            }
            Err(e) => tracing::warn!(service = %name, error = %e, "stored service not loaded"),
        }
    }
    Ok(out)
}

/// Every stored task, the unstopped ones re-adopted or stopped; `books` charged with the
/// re-adopted ones.
pub(super) fn tasks(
    store: &Store,
    books: &mut Books,
    runtime: &dyn Runtime,
    boot_id: &str,
    now: u64,
) -> Result<BTreeMap<String, Task>, StoreError> {
    let found = match store.meta(BOOT_ID)? {
        Some(previous) if previous != boot_id => Found::HostRestarted,
        _ => Found::Seen,
    };
    let mut tasks = BTreeMap::new();
    let (mut kept, mut ended) = (0, 0);
    for (id, json) in store.tasks()? {
        let mut task = match serde_json::from_str::<Task>(&json) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "stored task unreadable; skipped");
                continue;
            }
        };
        if !task.is_stopped() {
            let seen = match found {
                Found::Seen => runtime.observe(&id),
                Found::HostRestarted => Seen::default(),
            };
            task.readopt(found, &seen, now);
            if task.is_stopped() {
                ended += 1;
                tracing::info!(task = %id, reason = ?task.stopped_reason, "task stopped while berthd was down");
            } else {
                kept += 1;
                books.force(task.claim());
            }
            // Committed before anyone can ask: the answer is the same after another crash.
            super::tasks::persist(store, &task)?;
        }
        tasks.insert(id, task);
    }
    let live: BTreeSet<String> = tasks
        .values()
        .filter(|t| !t.is_stopped())
        .map(|t| t.id.clone())
        .collect();
    runtime.sweep(&live);
    store.set_meta(BOOT_ID, boot_id)?;
    if found == Found::HostRestarted {
        tracing::info!(stopped = ended, "the host restarted since berthd last ran");
    }
    tracing::info!(readopted = kept, stopped = ended, "tasks restored");
    Ok(tasks)
}
