//! Per-task and per-container series, built from what each running task's cgroups say
//! (through the runtime seam) for a scrape or the refresher (`cache.rs`); a task's change
//! makes the kept rendering stale, so a stopped task's series are gone with it.
//! Names follow cAdvisor where it has one (`container_cpu_usage_seconds_total` becomes
//! `berth_container_cpu_usage_seconds_total`), base units, `_total` for counters.

use std::time::{Duration, Instant};

pub use super::families::Families;
use crate::cgroup::stats::{CgroupStats, Pressure};
use crate::engine::{Engine, Status};

const US: f64 = 1e6;
const OOM_HELP: &str = "Processes killed by the OOM killer in it.";

/// Adds one cgroup's series under `prefix` (`berth_container` or `berth_task`).
pub fn add_cgroup(f: &mut Families, prefix: &str, labels: &[(&str, &str)], s: &CgroupStats) {
    let n = |suffix: &str| format!("{prefix}_{suffix}");
    let cpu = &s.cpu;
    f.counter(
        &n("cpu_usage_seconds_total"),
        "CPU time consumed.",
        labels,
        cpu.usage_usec as f64 / US,
    );
    f.counter(
        &n("cpu_user_seconds_total"),
        "CPU time consumed in user mode.",
        labels,
        cpu.user_usec as f64 / US,
    );
    f.counter(
        &n("cpu_system_seconds_total"),
        "CPU time consumed in kernel mode.",
        labels,
        cpu.system_usec as f64 / US,
    );
    f.counter(
        &n("cpu_cfs_periods_total"),
        "Enforcement periods elapsed under a CPU limit.",
        labels,
        cpu.nr_periods as f64,
    );
    f.counter(
        &n("cpu_cfs_throttled_periods_total"),
        "Periods in which the CPU limit throttled it.",
        labels,
        cpu.nr_throttled as f64,
    );
    f.counter(
        &n("cpu_cfs_throttled_seconds_total"),
        "Time spent throttled by the CPU limit.",
        labels,
        cpu.throttled_usec as f64 / US,
    );
    if let Some(cores) = s.cpu_limit_cores {
        f.gauge(
            &n("cpu_limit_cores"),
            "CPU limit (cpu.max) in CPUs.",
            labels,
            cores,
        );
    }
    f.gauge(
        &n("memory_usage_bytes"),
        "Memory in use, page cache included (memory.current).",
        labels,
        s.memory_bytes as f64,
    );
    f.gauge(
        &n("memory_working_set_bytes"),
        "Memory in use less inactive file cache.",
        labels,
        s.working_set_bytes as f64,
    );
    if let Some(max) = s.memory_max_bytes {
        f.gauge(
            &n("memory_limit_bytes"),
            "Hard memory limit (memory.max).",
            labels,
            max as f64,
        );
    }
    f.gauge(
        &n("memory_low_bytes"),
        "Protected memory (memory.low, from memoryReservation).",
        labels,
        s.memory_low_bytes as f64,
    );
    f.gauge(
        &n("memory_swap_bytes"),
        "Swap in use.",
        labels,
        s.swap_bytes as f64,
    );
    f.counter(
        &n("oom_kills_total"),
        "Processes killed by the OOM killer in it.",
        labels,
        s.oom_kills as f64,
    );
    f.gauge(
        &n("pids"),
        "Processes and threads in it.",
        labels,
        s.pids as f64,
    );
    if let Some(max) = s.pids_max {
        f.gauge(
            &n("pids_limit"),
            "Limit on processes and threads (pids.max).",
            labels,
            max as f64,
        );
    }
    for (resource, p) in [
        ("cpu", s.cpu_pressure),
        ("memory", s.memory_pressure),
        ("io", s.io_pressure),
    ] {
        add_pressure(f, &n("pressure_stalled_seconds_total"), labels, resource, p);
    }
}

fn add_pressure(
    f: &mut Families,
    name: &str,
    labels: &[(&str, &str)],
    resource: &str,
    p: Pressure,
) {
    for (kind, usec) in [("some", p.some_usec), ("full", p.full_usec)] {
        let mut l = labels.to_vec();
        l.push(("resource", resource));
        l.push(("kind", kind));
        f.counter(
            name,
            "Time some (or all) of its tasks stalled waiting for the resource (PSI).",
            &l,
            usec as f64 / US,
        );
    }
}

/// Every running task's and container's series, and the count of tasks by status; the time
/// spent reading cgroups and links is added to `reading`.
pub fn collect(engine: &Engine, reading: &mut Duration) -> Families {
    let mut f = Families::default();
    // Read once, and only when some task has an interface of its own.
    let mut links = None;
    for t in engine.tasks(false) {
        let started = Instant::now();
        let usage = engine.usage_of(&t);
        *reading += started.elapsed();
        let Some(usage) = usage else {
            continue;
        };
        let (family, revision) = t
            .task_definition
            .rsplit_once(':')
            .unwrap_or((&t.task_definition, ""));
        let task_labels = [
            ("task_id", t.id.as_str()),
            ("family", family),
            ("revision", revision),
        ];
        add_cgroup(&mut f, "berth_task", &task_labels, &usage.task);
        if !t.network.interfaces.is_empty() {
            let started = Instant::now();
            let links = links.get_or_insert_with(super::network::host_links);
            *reading += started.elapsed();
            super::network::add_task(&mut f, &t, &task_labels, links);
        }
        for (container, stats) in &usage.containers {
            let mut l = task_labels.to_vec();
            l.push(("container", container.as_str()));
            add_cgroup(&mut f, "berth_container", &l, stats);
        }
        // An exited container's cgroup is gone with it; its OOM kill stays countable while
        // the task runs, from the shim's exit report.
        for c in &t.containers {
            let exited = !usage.containers.iter().any(|(n, _)| *n == c.name);
            if exited
                && c.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("OutOfMemory"))
            {
                let mut l = task_labels.to_vec();
                l.push(("container", c.name.as_str()));
                f.counter("berth_container_oom_kills_total", OOM_HELP, &l, 1.0);
            }
        }
    }
    let counts = engine.count_by_status();
    for status in [
        Status::Provisioning,
        Status::Pending,
        Status::Running,
        Status::Stopping,
        Status::Stopped,
    ] {
        let n = counts.get(&status).copied().unwrap_or(0);
        f.gauge(
            "berth_tasks",
            "Tasks berth knows, by lastStatus.",
            &[("last_status", status.as_str())],
            n as f64,
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::stats::CpuStat;

    #[test]
    fn a_container_renders_as_counters_and_gauges_in_base_units() {
        let mut f = Families::default();
        let stats = CgroupStats {
            cpu: CpuStat {
                usage_usec: 2_500_000,
                ..CpuStat::default()
            },
            memory_bytes: 4096,
            memory_max_bytes: Some(33_554_432),
            oom_kills: 1,
            ..CgroupStats::default()
        };
        let labels = [
            ("task_id", "t1"),
            ("family", "web"),
            ("revision", "3"),
            ("container", "app"),
        ];
        add_cgroup(&mut f, "berth_container", &labels, &stats);
        let text = f.text();
        let l = r#"{task_id="t1",family="web",revision="3",container="app"}"#;
        for want in [
            "# TYPE berth_container_cpu_usage_seconds_total counter".to_string(),
            format!("berth_container_cpu_usage_seconds_total{l} 2.5"),
            format!("berth_container_memory_limit_bytes{l} 33554432"),
            format!("berth_container_oom_kills_total{l} 1"),
            "# TYPE berth_container_memory_usage_bytes gauge".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
        // No limit, no series: an absent limit is not a zero limit.
        assert!(!text.contains("berth_container_cpu_limit_cores"), "{text}");
    }
}
