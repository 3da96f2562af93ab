//! The Prometheus face: `GET /metrics` in the text format (0.0.4). Values are read from engine
//! snapshots at scrape time, so a scrape always shows the books as they are.
//!
//! The `prometheus` crate (0.14) is used rather than `prometheus-client`: it writes the 0.0.4
//! text format that every Prometheus and `promtool check metrics` reads, and its label-value
//! vectors with `remove_label_values` cover series that disappear with a task.

mod http;
mod registry;

pub use http::serve;
pub use registry::{Metrics, MetricsError};
