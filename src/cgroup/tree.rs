//! berth's delegated subtree: the daemon moves itself into the leaf `daemon/` (cgroup v2 lets
//! only leaves hold processes once controllers are enabled below), turns the controllers on
//! down the tree, and keeps `tasks/` as the parent of every task's cgroup.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "berthd runs in the root cgroup; start it from its systemd unit (Delegate=yes) or set \
         cgroup_path in the config"
    )]
    RootCgroup,
}

/// The cgroup subtree berth owns, as absolute directories.
#[derive(Debug, Clone)]
pub struct CgroupTree {
    mount: PathBuf,
    root: PathBuf,
}

/// Controllers berth enables for its tasks, when the host offers them.
const WANTED: [&str; 4] = ["cpu", "memory", "pids", "io"];

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TreeError + 'a {
    move |source| TreeError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

impl CgroupTree {
    /// `own` is the daemon's cgroup relative to `mount`; after a previous start it may already
    /// be the `daemon` leaf, whose parent is then the delegated root.
    pub fn locate(mount: &Path, own: &Path) -> Result<CgroupTree, TreeError> {
        let rel = own.strip_prefix("/").unwrap_or(own);
        let rel = if rel.file_name().is_some_and(|n| n == "daemon") {
            rel.parent().unwrap_or(Path::new(""))
        } else {
            rel
        };
        if rel.as_os_str().is_empty() {
            return Err(TreeError::RootCgroup);
        }
        Ok(CgroupTree {
            mount: mount.to_owned(),
            root: mount.join(rel),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Parent of every task's cgroup.
    pub fn tasks(&self) -> PathBuf {
        self.root.join("tasks")
    }

    /// The cgroup of one task.
    pub fn task(&self, id: &str) -> PathBuf {
        self.tasks().join(id)
    }

    /// The leaf every shim moves into: out of the daemon's leaf, so that the daemon's own
    /// usage is its own, and out of the tasks', so that a shim never counts against a task.
    pub fn shims(&self) -> PathBuf {
        self.root.join("shims")
    }

    /// `abs` as a path from the hierarchy's mount point, the form OCI's `cgroupsPath` takes.
    pub fn relative(&self, abs: &Path) -> PathBuf {
        Path::new("/").join(abs.strip_prefix(&self.mount).unwrap_or(abs))
    }

    /// Moves process `pid` into the `daemon` leaf and enables the controllers below the root
    /// and below `tasks/`.
    pub fn take(&self, pid: u32) -> Result<(), TreeError> {
        let leaf = self.root.join("daemon");
        std::fs::create_dir_all(&leaf).map_err(io("create", &leaf))?;
        let procs = leaf.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io("move the daemon into", &procs))?;
        self.enable_controllers(&self.root)?;
        let shims = self.shims();
        std::fs::create_dir_all(&shims).map_err(io("create", &shims))?;
        let tasks = self.tasks();
        std::fs::create_dir_all(&tasks).map_err(io("create", &tasks))?;
        self.enable_controllers(&tasks)
    }

    fn enable_controllers(&self, dir: &Path) -> Result<(), TreeError> {
        let avail_path = dir.join("cgroup.controllers");
        let available = std::fs::read_to_string(&avail_path).map_err(io("read", &avail_path))?;
        let line: Vec<String> = WANTED
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        let ctl = dir.join("cgroup.subtree_control");
        std::fs::write(&ctl, line.join(" ")).map_err(io("enable controllers in", &ctl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_strips_the_daemon_leaf() {
        let t = CgroupTree::locate(
            Path::new("/sys/fs/cgroup"),
            Path::new("/system.slice/berthd.service/daemon"),
        )
        .unwrap();
        assert_eq!(
            t.root(),
            Path::new("/sys/fs/cgroup/system.slice/berthd.service")
        );
        assert_eq!(
            t.tasks(),
            PathBuf::from("/sys/fs/cgroup/system.slice/berthd.service/tasks")
        );
    }

    #[test]
    fn root_cgroup_is_refused() {
        assert!(matches!(
            CgroupTree::locate(Path::new("/sys/fs/cgroup"), Path::new("/")),
            Err(TreeError::RootCgroup)
        ));
    }

    #[test]
    fn take_writes_pid_and_controllers_over_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("svc");
        std::fs::create_dir_all(root.join("tasks")).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(root.join("tasks/cgroup.controllers"), "cpu memory pids").unwrap();
        let t = CgroupTree::locate(d.path(), Path::new("/svc")).unwrap();
        t.take(4242).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("daemon/cgroup.procs")).unwrap(),
            "4242"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
    }
}
