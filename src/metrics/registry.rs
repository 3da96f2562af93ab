//! berth's metric families and how a scrape fills them from the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

use super::cache::{Rendered, SeriesCache};
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
    cache: SeriesCache,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot define metric families")]
    Define(#[from] prometheus::Error),
}

impl Metrics {
    /// `refresh`: how often the tasks' series are rendered off the request path while someone
    /// scrapes (`metrics_refresh_ms`); zero renders them for each scrape.
    pub fn new(engine: Engine, refresh: Duration) -> Result<Metrics, MetricsError> {
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
            cache: SeriesCache::new(refresh),
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
        // The services' series are few and cheap: read for each scrape, as the host's are.
        let mut f = super::tasks::Families::default();
        super::services::collect(&self.engine, &mut f);
        f.gauge(
            "berth_scrape_host_duration_seconds",
            "Time this scrape spent on the host's and the services' series, read for each scrape.",
            &[],
            started.elapsed().as_secs_f64(),
        );
        let tasks = match self.cache.scraped(self.engine.generation()) {
            Some(r) => r,
            None => {
                let r = self.render_tasks(self.cache.now_ms());
                if self.cache.enabled() {
                    self.cache.store(r.clone());
                }
                r
            }
        };
        let age_ms = self.cache.now_ms().saturating_sub(tasks.at_ms);
        f.gauge(
            "berth_scrape_series_age_seconds",
            "Age of the task series in this answer: read off the request path every metrics_refresh_ms, or for this scrape.",
            &[],
            age_ms as f64 / 1000.0,
        );
        f.write_text(&mut out);
        out.extend_from_slice(&tasks.text);
        out
    }

    /// Renders the tasks' series now.
    fn render_tasks(&self, began_ms: u64) -> Rendered {
        let generation = self.engine.generation();
        let started = Instant::now();
        let mut reading = Duration::ZERO;
        let mut series = super::tasks::collect(&self.engine, &mut reading);
        let tasks = started.elapsed();
        // What this rendering cost berthd, by part, as node_exporter shows its collectors'.
        for (part, took) in [
            ("task_files", reading),
            ("task_series", tasks.saturating_sub(reading)),
        ] {
            series.gauge(
                "berth_scrape_part_duration_seconds",
                "Time the rendering of the task series in this answer spent on each part: reading the tasks' cgroup and link files, building the series.",
                &[("part", part)],
                took.as_secs_f64(),
            );
        }
        let mut text = Vec::new();
        series.write_text(&mut text);
        Rendered {
            text: Arc::new(text),
            generation,
            at_ms: began_ms,
            took_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Starts the thread that renders the tasks' series off the request path, when the cache
    /// is on.
    pub fn start_refresher(&self) -> std::io::Result<()> {
        if !self.cache.enabled() {
            return Ok(());
        }
        let metrics = self.clone();
        std::thread::Builder::new()
            .name("metrics-refresh".into())
            .spawn(move || {
                let cache = metrics.cache.clone();
                cache.refresh_forever(|began| metrics.render_tasks(began))
            })
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_shows_registered_and_remaining() {
        let dir = tempfile::tempdir().unwrap();
        let engine = crate::engine::test_engine(dir.path());
        let text =
            String::from_utf8(Metrics::new(engine, Duration::ZERO).unwrap().render()).unwrap();
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
            text.contains("\nberth_scrape_host_duration_seconds "),
            "{text}"
        );
        assert!(
            text.contains("\nberth_scrape_series_age_seconds 0\n"),
            "{text}"
        );
        assert!(
            text.contains("berth_host_ports{protocol=\"udp\",state=\"remaining\"} 65535"),
            "{text}"
        );
    }
}
