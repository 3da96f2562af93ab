//! Wakes the engine when a shim writes into a task's status directory (inotify), so a start
//! or an exit is seen as it happens rather than at the next sweep. The status files are
//! renamed into place (`write_atomic`), hence `IN_MOVED_TO`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Debug)]
pub struct StatusWatch {
    inotify: Inotify,
    /// Task ids by watch, and watches by task id.
    tasks: Mutex<(
        HashMap<WatchDescriptor, String>,
        HashMap<String, WatchDescriptor>,
    )>,
}

impl StatusWatch {
    pub fn new() -> nix::Result<StatusWatch> {
        Ok(StatusWatch {
            inotify: Inotify::init(InitFlags::IN_CLOEXEC)?,
            tasks: Mutex::default(),
        })
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        (
            HashMap<WatchDescriptor, String>,
            HashMap<String, WatchDescriptor>,
        ),
    > {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches `dir` for task `id`; once per task. A directory that cannot be watched leaves
    /// the task to the engine's periodic sweep.
    pub fn add(&self, id: &str, dir: &Path) {
        let mut t = self.lock();
        if t.1.contains_key(id) {
            return;
        }
        match self.inotify.add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE,
        ) {
            Ok(wd) => {
                t.0.insert(wd, id.to_string());
                t.1.insert(id.to_string(), wd);
            }
            Err(e) => {
                tracing::debug!(task = id, error = %e, "status directory not watched; swept instead")
            }
        }
    }

    pub fn remove(&self, id: &str) {
        let mut t = self.lock();
        if let Some(wd) = t.1.remove(id) {
            t.0.remove(&wd);
            // The kernel drops the watch itself when the directory goes.
            let _ = self.inotify.rm_watch(wd);
        }
    }

    /// Sends the id of every task whose status directory changes, until the receiver goes.
    /// Blocks: run it on a thread of its own.
    pub fn run(&self, tx: UnboundedSender<String>) {
        loop {
            let events = match self.inotify.read_events() {
                Ok(e) => e,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "status watch ended; tasks are swept instead");
                    return;
                }
            };
            let ids: Vec<String> = {
                let t = self.lock();
                events
                    .iter()
                    .filter_map(|e| t.0.get(&e.wd).cloned())
                    .collect()
            };
            for id in ids {
                if tx.send(id).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_file_renamed_into_a_watched_directory_names_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(StatusWatch::new().unwrap());
        w.add("t1", dir.path());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let runner = w.clone();
        std::thread::spawn(move || runner.run(tx));
        crate::fsutil::write_atomic(&dir.path().join("shim.json"), b"{}").unwrap();
        let got = rx.blocking_recv();
        assert_eq!(got.as_deref(), Some("t1"));
    }
}
