//! berth: Amazon ECS for one Linux host. The library behind `berthd` and `berthctl`.

pub mod capacity;
pub mod cgroup;
pub mod config;
pub mod host;
pub mod spec;
