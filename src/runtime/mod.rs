//! Running tasks. The engine sees only [`Runtime`]: launch a task, tell it to stop, observe
//! what happened, release what it held. Today's backend is [`ContainerRuntime`]: a shim process
//! per task creating the containers with libcontainer. A microVM backend takes the shim's place
//! behind the same trait.

pub mod bundle;
mod cleanup;
mod container;
mod devices;
mod envfiles;
pub mod exec;
mod gate;
pub mod logfile;
pub mod microvm;
mod net;
pub mod plan;
pub mod report;
mod scope;
pub mod secrets;
pub mod shim;
mod spawn;
mod status_watch;
mod usage;
mod volumes;

pub use container::{ContainerRuntime, RuntimeConfig};
pub use microvm::VmSettings;
pub use report::{Observation, OomScope};
pub use scope::{ScopeError, Scopes};

use std::collections::BTreeSet;

use crate::cgroup::stats::CgroupStats;
use crate::spec::TaskDefinition;

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Becomes ECS's `CannotPullContainerError`.
    #[error("CannotPullContainerError: {0}")]
    Image(#[from] crate::image::ImageError),
    #[error("CannotCreateContainerError: {0}")]
    Bundle(#[from] bundle::BundleError),
    #[error("CannotCreateContainerError: {0}")]
    Cgroup(#[from] crate::cgroup::TaskCgroupError),
    #[error("CannotCreateContainerError: container {container}: {what}")]
    Host { container: String, what: String },
    #[error("CannotCreateContainerError: network: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("CannotCreateContainerError: {0}")]
    Name(#[from] crate::names::NameError),
    #[error("CannotStartContainerError: microVM: {0}")]
    Vm(String),
    #[error("CannotCreateContainerError: cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A task the engine asks a backend to run.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub task_id: &'a str,
    pub definition: &'a TaskDefinition,
    /// Its addresses and published ports (empty in host and none modes).
    pub network: &'a crate::network::TaskNetwork,
    /// The microVM's size, for a task in one.
    pub vm: Option<&'a crate::vm::sizing::VmSize>,
    /// MiB the books hold for the task: a microVM task's cgroup gets exactly this (the VM and
    /// its VMM's overhead).
    pub reserved_memory_mib: u64,
}

/// What a backend says about one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub report: Observation,
    /// False once the process that holds the task (shim, VMM) is gone.
    pub holder_alive: bool,
}

/// What a task's cgroups have used so far: the task's own and each container's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub task: CgroupStats,
    pub containers: Vec<(String, CgroupStats)>,
}

/// The seam between the engine and an isolation backend.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// Prepares and starts the task; returns once its holder process runs.
    fn launch(&self, launch: &Launch) -> Result<(), LaunchError>;
    /// Whether this host can run tasks in `isolation` now; the reason and the fix when not.
    fn supports(&self, isolation: crate::vm::sizing::Isolation) -> Result<(), String> {
        match isolation {
            crate::vm::sizing::Isolation::Container => Ok(()),
            other => Err(format!("this runtime cannot run {} tasks", other.as_str())),
        }
    }
    /// Asks the task's containers to stop (each with its stopTimeout). Repeatable.
    fn stop(&self, task_id: &str);
    fn observe(&self, task_id: &str) -> Seen;
    /// Frees what a stopped task held on the host: anything of it still running, its mounts,
    /// its cgroup. Its logs stay.
    fn release(&self, task_id: &str);
    /// Removes what is left of a stopped task that berth forgets (its directory, logs
    /// included); it was released when it stopped. False when something stays (tried again
    /// at the next pass, the task's record kept till then).
    fn forget(&self, _task_id: &str) -> bool {
        true
    }
    /// Frees what the backend holds for any task not in `live` (after a crash, at start).
    fn sweep(&self, live: &BTreeSet<String>);
    /// What the task has used, read when asked; `None` once nothing of it runs.
    fn usage(&self, task_id: &str, containers: &[String]) -> Option<Usage>;
    /// Sends a task's id on `tx` whenever its backend may have news of it, so the engine
    /// observes it at once; the engine's periodic sweep covers anything this misses.
    fn notify_changes(&self, _tx: tokio::sync::mpsc::UnboundedSender<String>) {}
    /// A container's log from stream offset `offset`, at most `max` bytes, and the offset to
    /// ask for next (offsets run on across rotations).
    fn read_log(&self, task_id: &str, container: &str, offset: u64, max: usize) -> (Vec<u8>, u64);
}
