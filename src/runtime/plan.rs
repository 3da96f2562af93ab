//! The plan a shim carries out, written by berthd into the task's directory before the shim
//! starts: everything the shim needs, so that the shim decides nothing and reads no config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::TaskLimits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub task_id: String,
    pub family: String,
    /// The task's systemd scope, which the shim starts in.
    pub scope_cgroup: PathBuf,
    /// Absolute cgroup directory the shim moves itself into.
    pub shim_cgroup: PathBuf,
    /// Absolute cgroup directory of the task, and what the shim writes into it.
    pub task_cgroup: PathBuf,
    pub limits: TaskLimits,
    /// libcontainer's state root (short: socket paths live under it).
    pub runtime_root: PathBuf,
    /// In the order they are created.
    pub containers: Vec<ContainerPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPlan {
    pub name: String,
    /// libcontainer's id for it: short, unique on the host.
    pub container_id: String,
    pub essential: bool,
    pub stop_timeout_secs: u64,
    /// Directory holding `config.json`.
    pub bundle: PathBuf,
    /// Overlay lower layers, top-most first.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    /// Absolute cgroup directory of the container.
    pub cgroup: PathBuf,
    pub log: PathBuf,
}

pub const PLAN_FILE: &str = "plan.json";

pub fn read(task_dir: &Path) -> std::io::Result<Plan> {
    let bytes = std::fs::read(task_dir.join(PLAN_FILE))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
