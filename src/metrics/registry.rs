//! berth's metric families and how a scrape fills them from the engine.

use std::time::{Duration, Instant};

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use super::lifecycle::Lifecycle;
use crate::engine::Engine;
use crate::spec::Protocol;

const MIB: i64 = 1024 * 1024;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    engine: Engine,
    cpu_units: IntGaugeVec,
    memory_bytes: IntGaugeVec,
    ports: IntGaugeVec,
    lifecycle: Lifecycle,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot define metric families")]
    Define(#[from] prometheus::Error),
}

impl Metrics {
    pub fn new(engine: Engine) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let cpu_units = IntGaugeVec::new(
            Opts::new(
                "berth_host_cpu_units",
                "Host CPU units (1024 per CPU), registered and remaining after reservations.",
            ),
            &["state"],
        )?;
        let memory_bytes = IntGaugeVec::new(
            Opts::new("berth_host_memory_bytes", "Host memory in bytes, registered (MemTotal less the reserve) and remaining after reservations."),
            &["state"],
        )?;
        let ports = IntGaugeVec::new(
            Opts::new(
                "berth_host_ports",
                "Host ports tasks may bind, registered (all but those kept for the host) and remaining.",
            ),
            &["protocol", "state"],
        )?;
        let build = IntGaugeVec::new(
            Opts::new(
                "berth_build_info",
                "A metric with a constant 1 labelled by berth's version.",
            ),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(cpu_units.clone()))?;
        registry.register(Box::new(memory_bytes.clone()))?;
        registry.register(Box::new(ports.clone()))?;
        registry.register(Box::new(build))?;
        let lifecycle = Lifecycle::new(&registry)?;
        Ok(Metrics {
            registry,
            engine,
            cpu_units,
            memory_bytes,
            ports,
            lifecycle,
        })
    }

    /// Adds a family another part of berthd keeps (the puller's durations).
    pub fn add(&self, c: Box<dyn prometheus::core::Collector>) -> Result<(), MetricsError> {
        Ok(self.registry.register(c)?)
    }

    /// The launch and stop counts, to follow the engine with.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    /// Fills the gauges from the engine and renders the text format.
    pub fn render(&self) -> Vec<u8> {
        let cap = self.engine.capacity();
        for (state, r) in [("registered", cap.registered), ("remaining", cap.remaining)] {
            self.cpu_units
                .with_label_values(&[state])
                .set(r.cpu_units as i64);
            self.memory_bytes
                .with_label_values(&[state])
                .set(r.memory_mib as i64 * MIB);
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let registered = cap.ports.registered(protocol);
            let remaining = cap.ports.remaining(protocol);
            for (state, n) in [("registered", registered), ("remaining", remaining)] {
                self.ports
                    .with_label_values(&[protocol.as_str(), state])
                    .set(n as i64);
            }
        }
        let mut out = Vec::new();
        let started = Instant::now();
        // Encoding into a Vec fails only on malformed families, which `new` rules out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        let host = started.elapsed();
        let started = Instant::now();
        let mut reading = Duration::ZERO;
        let mut series = super::tasks::collect(&self.engine, &mut reading);
        let tasks = started.elapsed();
        let started = Instant::now();
        super::services::collect(&self.engine, &mut series);
        let services = started.elapsed();
        // What this scrape cost berthd, by part, as node_exporter shows its collectors'.
        for (part, took) in [
            ("host", host),
            ("task_files", reading),
            ("task_series", tasks.saturating_sub(reading)),
            ("services", services),
        ] {
            series.gauge(
                "berth_scrape_part_duration_seconds",
                "Time this scrape spent on each part: the host series, reading the tasks' cgroup and link files, building the tasks' series, the services' series.",
                &[("part", part)],
                took.as_secs_f64(),
            );
        }
        series.write_text(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_shows_registered_and_remaining() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::test_engine(dir.path());
        let text = String::from_utf8(Metrics::new(engine).unwrap().render()).unwrap();
        assert!(
            text.contains("berth_host_cpu_units{state=\"registered\"} 2048"),
            "{text}"
        );
        assert!(
            text.contains("berth_host_memory_bytes{state=\"remaining\"} 2097152000"),
            "{text}"
        );
        assert!(text.contains("# TYPE berth_build_info gauge"), "{text}");
        assert!(
            text.contains("berth_host_ports{protocol=\"udp\",state=\"remaining\"} 65535"),
            "{text}"
        );
    }
}
