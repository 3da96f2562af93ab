//! cgroup v2, over an injectable mount point: checking the host offers what berth needs,
//! where each task's systemd scope and cgroups are, and the task-level ECS limits. Container
//! leaves are made by libcontainer (see `runtime`).

mod host_check;
pub mod stats;
pub mod task;
mod tree;

pub use host_check::{check_host, HostCheckError, REQUIRED_CONTROLLERS};
pub use task::{MemoryEvents, TaskCgroupError, TaskLimits};
pub use tree::CgroupTree;
