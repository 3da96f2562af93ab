//! The Prometheus face: `GET /metrics` in the text format (0.0.4). The host's series are read
//! from engine snapshots at scrape time, so a scrape always shows the books as they are; the
//! tasks' series come from a rendering kept fresh off the request path (`cache.rs`).
//!
//! The `prometheus` crate (0.14) is used rather than `prometheus-client`: it writes the 0.0.4
//! text format that every Prometheus and `promtool check metrics` reads. Host series live in
//! its registry; per-task series are built from the tasks' cgroups (`tasks.rs`), written straight
//! as text (`families.rs`); a task that changes makes the kept rendering stale, so a stopped
//! task's series disappear with it.

mod cache;
mod families;
mod http;
mod lifecycle;
mod network;
mod registry;
mod services;
mod tasks;

pub use http::serve;
pub use registry::{Metrics, MetricsError};
