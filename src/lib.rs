//! berth: Amazon ECS for one Linux host. The library behind `berthd` and `berthctl`.

pub mod autoscale;
pub mod balance;
pub mod beneath;
pub mod capacity;
pub mod cgroup;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod ecs_api;
pub mod engine;
pub mod errors;
pub mod fsutil;
pub mod host;
pub mod httpd;
pub mod image;
pub mod metrics;
pub mod names;
pub mod network;
pub mod runtime;
pub mod service;
pub mod spec;
pub mod store;
pub mod timing;
pub mod vm;
