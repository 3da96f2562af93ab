//! The Prometheus face: `GET /metrics` in the text format (0.0.4). Values are read from engine
//! snapshots at scrape time, so a scrape always shows the books as they are.
//!
//! The `prometheus` crate (0.14) is used rather than `prometheus-client`: it writes the 0.0.4
//! text format that every Prometheus and `promtool check metrics` reads. Host series live in
//! its registry; per-task series are built fresh at each scrape (`tasks.rs`), written straight
//! as text (`families.rs`), so a stopped task's series disappear with it.

mod families;
mod http;
mod lifecycle;
mod network;
mod registry;
mod services;
mod tasks;

pub use http::serve;
pub use registry::{Metrics, MetricsError};
