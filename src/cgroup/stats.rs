//! What a cgroup has used, read from its files: `cpu.stat`, `memory.current`/`memory.stat`,
//! limits, `memory.events`, `pids.*` and the pressure (PSI) files. One read per file, parsed
//! by pure functions; a file the kernel does not offer reads as absent, never as an error.

use std::path::Path;

use super::task::{parse_memory_events, CPU_PERIOD_US};

/// Cumulative CPU time and throttling (`cpu.stat`), microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

/// Stall totals of one resource (`cpu.pressure`, ...), microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_usec: u64,
    pub full_usec: u64,
}

/// Everything berth shows of one cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu: CpuStat,
    /// `cpu.max` as CPUs; `None` when unlimited.
    pub cpu_limit_cores: Option<f64>,
    pub memory_bytes: u64,
    /// Usage less inactive file cache, as cAdvisor counts the working set.
    pub working_set_bytes: u64,
    pub memory_max_bytes: Option<u64>,
    pub memory_low_bytes: u64,
    pub swap_bytes: u64,
    pub oom_kills: u64,
    pub pids: u64,
    pub pids_max: Option<u64>,
    pub cpu_pressure: Pressure,
    pub memory_pressure: Pressure,
    pub io_pressure: Pressure,
}

/// Reads the statistics of the cgroup directory `dir`; `None` when it does not exist.
pub fn read(dir: &Path) -> Option<CgroupStats> {
    let text = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let cpu_stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let memory_bytes = number(&text("memory.current")).unwrap_or(0);
    let inactive = keyed(&text("memory.stat"), "inactive_file").unwrap_or(0);
    Some(CgroupStats {
        cpu: parse_cpu_stat(&cpu_stat),
        cpu_limit_cores: parse_cpu_max(&text("cpu.max")),
        memory_bytes,
        working_set_bytes: memory_bytes.saturating_sub(inactive),
        memory_max_bytes: number(&text("memory.max")),
        memory_low_bytes: number(&text("memory.low")).unwrap_or(0),
        swap_bytes: number(&text("memory.swap.current")).unwrap_or(0),
        oom_kills: parse_memory_events(&text("memory.events")).oom_kill,
        pids: number(&text("pids.current")).unwrap_or(0),
        pids_max: number(&text("pids.max")),
        cpu_pressure: parse_pressure(&text("cpu.pressure")),
        memory_pressure: parse_pressure(&text("memory.pressure")),
        io_pressure: parse_pressure(&text("io.pressure")),
    })
}

/// A single number file; `max` (or anything else) is `None`.
fn number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.stat`.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub fn parse_cpu_stat(text: &str) -> CpuStat {
    let get = |k| keyed(text, k).unwrap_or(0);
    CpuStat {
        usage_usec: get("usage_usec"),
        user_usec: get("user_usec"),
        system_usec: get("system_usec"),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_usec: get("throttled_usec"),
    }
}

/// `cpu.max` (`QUOTA PERIOD` or `max PERIOD`) as CPUs.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(CPU_PERIOD_US as f64);
    (period > 0.0).then(|| quota / period)
}

/// PSI lines: `some avg10=0.00 avg60=0.00 avg300=0.00 total=1234`.
pub fn parse_pressure(text: &str) -> Pressure {
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))
            .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    Pressure {
        some_usec: total("some "),
        full_usec: total("full "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_is_read_by_key() {
        let s = parse_cpu_stat(
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 350000\n",
        );
        assert_eq!(s.usage_usec, 2_500_000);
        assert_eq!(s.system_usec, 500_000);
        assert_eq!(s.nr_throttled, 7);
        assert_eq!(s.throttled_usec, 350_000);
    }

    #[test]
    fn cpu_max_becomes_cores_and_max_is_unlimited() {
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
    }

    #[test]
    fn pressure_totals_of_some_and_full() {
        let p = parse_pressure(
            "some avg10=1.00 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n",
        );
        assert_eq!(
            p,
            Pressure {
                some_usec: 123_456,
                full_usec: 789
            }
        );
    }

    #[test]
    fn a_fake_cgroup_reads_whole_and_working_set_leaves_out_inactive_file() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, t: &str| std::fs::write(d.path().join(f), t).unwrap();
        w("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n");
        w("cpu.max", "max 100000\n");
        w("memory.current", "1048576\n");
        w(
            "memory.stat",
            "anon 524288\nfile 524288\ninactive_file 262144\n",
        );
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n");
        w("pids.current", "3\n");
        w("pids.max", "4096\n");
        let s = read(d.path()).unwrap();
        assert_eq!(s.working_set_bytes, 1_048_576 - 262_144);
        assert_eq!(s.memory_max_bytes, None);
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.pids_max, Some(4096));
        assert_eq!(s.cpu_limit_cores, None);
        assert!(read(&d.path().join("gone")).is_none());
    }
}
