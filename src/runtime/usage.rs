//! What a task's cgroups have used, read through their statistics files held open between
//! readings (every scrape and every autoscaler sample reads every running task), and, for
//! the containers of a microVM task, from its guest's report.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

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
struct Open {
    tasks: HashMap<String, Held>,
    /// One buffer for every read, kept between readings.
    buf: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct UsageReader {
    open: Mutex<Open>,
}

impl UsageReader {
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task's usage now; `None` once its cgroup is gone. A container whose cgroup is not
    /// (or no longer) there is read from the guest's report, or left out.
    pub fn read(
        &self,
        cgroup: &Path,
        task_dir: &Path,
        task_id: &str,
        containers: &[String],
    ) -> Option<Usage> {
        let mut guard = self.lock();
        let Open { tasks, buf } = &mut *guard;
        if buf.len() < BUF {
            buf.resize(BUF, 0);
        }
        if !tasks.contains_key(task_id) {
            let task = StatFiles::open(cgroup)?;
            let containers = HashMap::new();
            tasks.insert(task_id.to_string(), Held { task, containers });
        }
        let held = tasks.get_mut(task_id)?;
        let Some(task) = held.task.read(buf) else {
            tasks.remove(task_id);
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
            let stats = match held.containers.get_mut(c).and_then(|f| f.read(buf)) {
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
        self.lock().tasks.remove(task_id);
    }

    /// Closes the files of every task not in `live`.
    pub fn retain(&self, live: &BTreeSet<String>) {
        self.lock().tasks.retain(|id, _| live.contains(id));
    }
}
