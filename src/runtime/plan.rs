//! The plan a shim carries out, written by berthd into the task's directory before the shim
//! starts: everything the shim needs, so that the shim decides nothing and reads no config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::TaskLimits;
use crate::spec::order::{Dependency, HealthCheck};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// In the definition's order; each starts once its `depends_on` holds.
    pub containers: Vec<ContainerPlan>,
    /// Namespaces the task's containers share (`pidMode`/`ipcMode` task): `pid`, `ipc`. The
    /// shim holds them in a process of its own, which the containers join.
    #[serde(default)]
    pub shared_namespaces: Vec<String>,
    /// For a microVM task: the VM the shim boots, whose agent creates the containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmPlan>,
    /// Bytes a container's log file reaches before it rotates (0: never).
    #[serde(default)]
    pub log_max_bytes: u64,
}

/// A microVM task's machine, as the shim boots it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmPlan {
    pub vmm: PathBuf,
    pub accel: crate::vm::vmm::Accel,
    /// Debian's cloud kernel, unpacked.
    pub kernel_dir: PathBuf,
    /// `berth-agent`, the guest's PID 1.
    pub agent: PathBuf,
    /// Where the agent's initramfs and the layers' disks are cached.
    pub cache_dir: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub boot_timeout_secs: u64,
    /// Seconds without a word from the agent (it is pinged every few) before the task is
    /// lost.
    #[serde(default = "default_agent_timeout")]
    pub agent_timeout_secs: u64,
    /// The agent channel's Unix socket (short: it must fit a socket address).
    pub socket: PathBuf,
    /// The unprivileged user the VMM runs as (`vmm_user`); `None`: root.
    #[serde(default)]
    pub run_as: Option<crate::vm::jail::RunAs>,
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
    #[serde(default)]
    pub depends_on: Vec<Dependency>,
    /// Seconds to wait for `depends_on` (ECS's default on Linux: 3 minutes).
    #[serde(default = "default_start_timeout")]
    pub start_timeout_secs: u64,
    #[serde(default)]
    pub health: Option<HealthPlan>,
    /// The process's working directory, which the shim makes when the image lacks it.
    #[serde(default = "root_dir")]
    pub cwd: String,
    /// The container has a network namespace of its own with no interface (`none`,
    /// `disableNetworking`): the shim sets its `lo` up between create and start.
    #[serde(default)]
    pub loopback_up: bool,
}

fn default_agent_timeout() -> u64 {
    60
}

fn root_dir() -> String {
    "/".into()
}

/// ECS's default `startTimeout` on Linux (`ECS_CONTAINER_START_TIMEOUT`).
pub const DEFAULT_START_TIMEOUT_SECS: u64 = 180;

fn default_start_timeout() -> u64 {
    DEFAULT_START_TIMEOUT_SECS
}

/// A health check as the shim runs it: inside the container, as its user, in its directory
/// (the container's `cwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthPlan {
    pub check: HealthCheck,
    pub uid: u32,
    pub gid: u32,
}

pub const PLAN_FILE: &str = "plan.json";

pub fn read(task_dir: &Path) -> std::io::Result<Plan> {
    let bytes = std::fs::read(task_dir.join(PLAN_FILE))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}
