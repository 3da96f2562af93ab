//! cgroup v2, over an injectable mount point: checking the host offers what berth needs, and
//! taking the subtree systemd delegates to the daemon.
//!
//! Not here: the ECS-to-cgroup resource mapping and per-task cgroups (those come with the
//! runtime), and metrics reading.

mod host_check;
mod tree;

pub use host_check::{check_host, own_cgroup, HostCheckError, REQUIRED_CONTROLLERS};
pub use tree::{CgroupTree, TreeError};
