//! Where berth's cgroups live: every task in a systemd scope of its own,
//! `<slice>/berth-<task-id>.scope`, which systemd delegates to berth (`Delegate=yes`). Inside
//! it the shim sits in the leaf `shim/` and the task's limits in `task/`, with one leaf per
//! container below.
//!
//! Why scopes and not a subtree of berthd's own service cgroup: systemd before v254 cannot
//! start a service again while its cgroup has delegated children with controllers enabled
//! (the new main process has nowhere legal to go, status 219/CGROUP), and tasks must outlive
//! a berthd restart. Scopes outlive it by design, show up in `systemctl status` and
//! `systemd-cgls`, and are collected by systemd once their last process ends.

use std::path::{Path, PathBuf};

/// The systemd slice and cgroup mount berth's task scopes live under, as absolute directories.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    mount: PathBuf,
    slice: String,
}

const SCOPE_PREFIX: &str = "berth-";
const SCOPE_SUFFIX: &str = ".scope";

impl CgroupTree {
    /// `slice` is a top-level systemd slice name such as `berth.slice`.
    pub fn new(mount: &Path, slice: &str) -> CgroupTree {
        CgroupTree {
            mount: mount.to_owned(),
            slice: slice.to_string(),
        }
    }

    /// The cgroup v2 hierarchy's mount point.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    pub fn slice(&self) -> &str {
        &self.slice
    }

    /// The slice's cgroup: parent of every task's scope.
    pub fn slice_dir(&self) -> PathBuf {
        self.mount.join(&self.slice)
    }

    /// The systemd unit holding one task.
    pub fn unit(&self, id: &str) -> String {
        format!("{SCOPE_PREFIX}{id}{SCOPE_SUFFIX}")
    }

    /// The cgroup of a task's scope: shim and containers.
    pub fn scope(&self, id: &str) -> PathBuf {
        self.slice_dir().join(self.unit(id))
    }

    /// The task's own cgroup, holding the task-level limits; its containers are leaves below.
    pub fn task(&self, id: &str) -> PathBuf {
        self.scope(id).join("task")
    }

    /// The leaf the shim moves into: out of the task's, so that a shim never counts
    /// against a task's limits.
    pub fn shim(&self, id: &str) -> PathBuf {
        self.scope(id).join("shim")
    }

    /// Ids of the tasks that have a scope cgroup now; a scope named otherwise is not a task's.
    pub fn scoped_tasks(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.slice_dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name
                    .strip_prefix(SCOPE_PREFIX)?
                    .strip_suffix(SCOPE_SUFFIX)?;
                crate::names::is_task_id(id).then(|| id.to_string())
            })
            .collect()
    }

    /// `abs` as a path from the hierarchy's mount point, the form OCI's `cgroupsPath` takes.
    pub fn relative(&self, abs: &Path) -> PathBuf {
        Path::new("/").join(abs.strip_prefix(&self.mount).unwrap_or(abs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_lives_in_its_scope_under_the_slice() {
        let t = CgroupTree::new(Path::new("/sys/fs/cgroup"), "berth.slice");
        assert_eq!(t.unit("ab12"), "berth-ab12.scope");
        assert_eq!(
            t.task("ab12"),
            PathBuf::from("/sys/fs/cgroup/berth.slice/berth-ab12.scope/task")
        );
        assert_eq!(
            t.relative(&t.task("ab12").join("web")),
            PathBuf::from("/berth.slice/berth-ab12.scope/task/web")
        );
    }

    #[test]
    fn scoped_tasks_are_read_from_the_slice() {
        let d = tempfile::tempdir().unwrap();
        let t = CgroupTree::new(d.path(), "berth.slice");
        let (a, b) = ("a1".repeat(16), "b2".repeat(16));
        for name in [
            format!("berth-{a}.scope"),
            format!("berth-{b}.scope"),
            "other.scope".into(),
            "berth-...scope".into(),
            "berth-a1.scope".into(),
        ] {
            std::fs::create_dir_all(t.slice_dir().join(name)).unwrap();
        }
        let mut ids = t.scoped_tasks();
        ids.sort();
        assert_eq!(ids, vec![a, b]);
    }
}
