//! The client side of the D-Bus face, for `berthctl` and tests: the proxy generated from the
//! interface in `manager.rs`, so the two cannot drift apart.

pub use super::manager::ServiceScaledStream;
pub use super::manager::{ManagerProxy, TaskStateChangedStream};
pub use super::task::TaskObjectProxy;
