//! Starting a task's shim: fork+exec of `berth-shim TASK_DIR` behind its start gate, then the
//! task's systemd scope asked of systemd for it, and the gate opened once the shim is in the
//! scope (or the reason it stays shut sent through it).

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::container::io;
use super::gate;
use super::scope::{ScopeRequest, Scopes};
use super::LaunchError;
use crate::cgroup::CgroupTree;

/// What starting a shim needs of the container backend.
pub(super) struct ShimSpawn<'a> {
    pub exe: &'a PathBuf,
    pub args: &'a [String],
    pub scopes: &'a Arc<Scopes>,
    pub tree: &'a CgroupTree,
    /// Shims started and not yet reaped.
    pub spawned: &'a Arc<Mutex<BTreeSet<String>>>,
}

impl ShimSpawn<'_> {
    /// Starts `berthd shim DIR` behind its start gate, then asks systemd for the task's scope
    /// holding it and opens the gate once the shim is in it (or tells the shim why not, which
    /// it records as the task's failure to start).
    pub fn spawn(&self, id: &str, family: &str, dir: &Path) -> Result<(), LaunchError> {
        let log_path = dir.join("shim.log");
        let log = std::fs::File::create(&log_path).map_err(io("create", &log_path))?;
        let exe = &self.exe;
        let (gate_read, gate_write) = gate::new().map_err(io("make the start gate of", exe))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .args(self.args)
            .arg(dir)
            .env(gate::GATE_ENV, gate::GATE_FD.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(false);
        let read_fd = gate_read.as_raw_fd();
        // SAFETY: the hook only calls dup2/fcntl, which are async-signal-safe.
        unsafe { command.pre_exec(move || gate::install(read_fd)) };
        let mut child = command.spawn().map_err(io("start the shim", exe))?;
        drop(gate_read);
        let Some(pid) = child.id() else {
            return Err(io("start the shim", exe)(std::io::Error::other(
                "it exited at once",
            )));
        };
        let request = ScopeRequest {
            unit: self.tree.unit(id),
            slice: self.tree.slice().to_string(),
            description: format!("berth task {id} ({family})"),
            pid,
            cgroup: self.tree.relative(&self.tree.scope(id)),
        };
        let spawned = self.spawned.clone();
        let scopes = self.scopes.clone();
        let id = id.to_string();
        spawned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        tokio::spawn(async move {
            let scoping = std::time::Instant::now();
            let scoped = scopes.start(&request).await.map_err(|e| {
                tracing::warn!(task = %id, error = %e, "no scope for the task");
                format!("CannotCreateContainerError: {e}")
            });
            crate::timing::step(&id, "scope", scoping);
            gate::release(gate_write, scoped);
            // Reap the shim when it ends; a restarted berthd finds it through its status files.
            let _ = child.wait().await;
            spawned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
        Ok(())
    }
}
