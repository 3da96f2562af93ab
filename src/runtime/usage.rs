//! What a task's cgroups have used, read through their statistics files held open between
//! readings (every scrape and every autoscaler sample reads every running task), and, for
//! the containers of a microVM task, from its guest's report.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use super::{microvm, report, Usage};
use crate::cgroup::stats::StatFiles;

/// Far above any cgroup file's size: each file is one read.
const BUF: usize = 16 << 10;

#[derive(Debug)]
struct Held {
    task: StatFiles,
    containers: HashMap<String, StatFiles>,
}

#[derive(Debug, Default)]
pub struct UsageReader {
    open: Mutex<HashMap<String, Held>>,
}

impl UsageReader {
    /// The task's usage now; `None` once its cgroup is gone. A container whose cgroup is not
    /// (or no longer) there is read from the guest's report, or left out.
    pub fn read(
        &self,
        cgroup: &Path,
        task_dir: &Path,
        task_id: &str,
        containers: &[String],
    ) -> Option<Usage> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !open.contains_key(task_id) {
            let task = StatFiles::open(cgroup)?;
            open.insert(
                task_id.to_string(),
                Held {
                    task,
                    containers: HashMap::new(),
                },
            );
        }
        let held = open.get_mut(task_id)?;
        let mut buf = vec![0; BUF];
        let Some(task) = held.task.read(&mut buf) else {
            open.remove(task_id);
            return None;
        };
        let mut guest = None;
        let mut read = Vec::with_capacity(containers.len());
        for c in containers {
            if !held.containers.contains_key(c) {
                if let Some(files) = StatFiles::open(&cgroup.join(c)) {
                    held.containers.insert(c.clone(), files);
                }
            }
            let stats = match held.containers.get(c).and_then(|f| f.read(&mut buf)) {
                Some(s) => Some(s),
                None => {
                    held.containers.remove(c);
                    // A microVM task's containers have their cgroups in the guest.
                    let g = guest.get_or_insert_with(|| report::read_guest_usage(task_dir));
                    g.get(c).map(microvm::guest_stats)
                }
            };
            if let Some(s) = stats {
                read.push((c.clone(), s));
            }
        }
        Some(Usage {
            task,
            containers: read,
        })
    }

    /// Closes a task's files, so its removed cgroups are freed.
    pub fn forget(&self, task_id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task_id);
    }

    /// Closes the files of every task not in `live`.
    pub fn retain(&self, live: &BTreeSet<String>) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| live.contains(id));
    }
}
