//! The D-Bus face: `org.berth.Agent1` at `/org/berth/Agent1`. Thin: each call becomes a
//! request to the engine; errors are mapped to typed D-Bus errors in one place (`error.rs`).
//! The client proxy that `berthctl` uses is generated here too (`client.rs`).

mod access;
mod capacity;
pub mod client;
mod error;
mod images;
mod manager;
pub mod service;
mod task;
mod usage;

pub use error::BerthError;
pub use manager::Manager;
pub use task::{describe, follow, TaskObject, TASK_PATH_PREFIX};

/// Well-known bus name.
pub const BUS_NAME: &str = "org.berth.Agent1";
/// Manager object path.
pub const MANAGER_PATH: &str = "/org/berth/Agent1";
/// Group whose members (besides root) may change state.
pub const ADMIN_GROUP: &str = "berth";

use crate::config::BusChoice;

/// Opens a connection to the configured bus.
pub fn builder(bus: &BusChoice) -> zbus::connection::Builder<'static> {
    match bus {
        BusChoice::System => zbus::connection::Builder::system(),
        BusChoice::Session => zbus::connection::Builder::session(),
        BusChoice::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
}
