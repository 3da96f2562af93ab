//! What a cgroup has used, read from its files: `cpu.stat`, `memory.current`/`memory.stat`,
//! limits, `memory.events`, `pids.*` and the pressure (PSI) files. One read per file, parsed
//! by pure functions; a file the kernel does not offer reads as absent, never as an error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// The files a cgroup's statistics come from: what it uses, read at every reading...
const FILES: [&str; 9] = [
    "cpu.stat",
    "memory.current",
    "memory.stat",
    "memory.swap.current",
    "memory.events",
    "pids.current",
    "cpu.pressure",
    "memory.pressure",
    "io.pressure",
];
/// ... and its limits, which berth sets at creation and nothing changes after: read at every
/// reading only while the files are young (a cgroup can be opened between its creation and
/// libcontainer's writing of its limits), then every [`LIMITS_EVERY`].
const LIMIT_FILES: [&str; 4] = ["cpu.max", "memory.max", "memory.low", "pids.max"];
const LIMITS_YOUNG: Duration = Duration::from_secs(15);
const LIMITS_EVERY: Duration = Duration::from_secs(30);

/// Reads the statistics of the cgroup directory `dir`; `None` when it does not exist.
pub fn read(dir: &Path) -> Option<CgroupStats> {
    parse(|f| std::fs::read_to_string(dir.join(f)).ok())
}

/// A cgroup's statistics files held open, so each later reading costs one `pread` per file
/// (cgroupfs writes a file's content afresh for a read at offset 0) instead of an open, a
/// stat, two reads and a close: a scrape of many containers is mostly these calls.
/// Holding them keeps a removed cgroup's memory until they are dropped: drop them when the
/// task is released.
#[derive(Debug)]
pub struct StatFiles {
    files: Vec<Option<File>>,
    limit_files: Vec<Option<File>>,
    /// The limit files' texts, and when they were read.
    limits: Vec<Option<String>>,
    limits_at: Option<Instant>,
    opened: Instant,
}

impl StatFiles {
    /// `None` when `dir` is not a cgroup (its `cpu.stat` does not open).
    pub fn open(dir: &Path) -> Option<StatFiles> {
        let open = |f: &&str| File::open(dir.join(f)).ok();
        let files: Vec<Option<File>> = FILES.iter().map(open).collect();
        files.first()?.as_ref()?;
        Some(StatFiles {
            files,
            limit_files: LIMIT_FILES.iter().map(open).collect(),
            limits: vec![None; LIMIT_FILES.len()],
            limits_at: None,
            opened: Instant::now(),
        })
    }

    /// The statistics now; `None` once the cgroup is gone.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<CgroupStats> {
        let now = Instant::now();
        let young = now.duration_since(self.opened) < LIMITS_YOUNG;
        if young
            || self
                .limits_at
                .is_none_or(|t| now.duration_since(t) >= LIMITS_EVERY)
        {
            for (text, file) in self.limits.iter_mut().zip(&self.limit_files) {
                *text = file.as_ref().and_then(|f| read_whole(f, buf));
            }
            self.limits_at = Some(now);
        }
        let (files, limits) = (&self.files, &self.limits);
        parse(|name| {
            if let Some(i) = LIMIT_FILES.iter().position(|f| *f == name) {
                return limits.get(i)?.clone();
            }
            let i = FILES.iter().position(|f| *f == name)?;
            read_whole(files.get(i)?.as_ref()?, buf)
        })
    }
}

/// The file's content from offset 0: one read when it fits `buf` (every cgroup file does on
/// the hosts seen), more into a larger buffer when it does not.
fn read_whole(file: &File, buf: &mut [u8]) -> Option<String> {
    let n = file.read_at(buf, 0).ok()?;
    if n < buf.len() {
        return String::from_utf8(buf.get(..n)?.to_vec()).ok();
    }
    let mut whole = buf.to_vec();
    loop {
        let at = whole.len();
        whole.resize(at * 2, 0);
        let n = file.read_at(&mut whole[at..], at as u64).ok()?;
        whole.truncate(at + n);
        if n == 0 || whole.len() < at * 2 {
            return String::from_utf8(whole).ok();
        }
    }
}

/// Builds the statistics from `text(FILE)`; `None` without `cpu.stat`.
fn parse(mut text: impl FnMut(&str) -> Option<String>) -> Option<CgroupStats> {
    let cpu_stat = text("cpu.stat")?;
    let mut text = |f: &str| text(f).unwrap_or_default();
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
        // Held open, the files read again as they are now.
        let mut held = StatFiles::open(d.path()).unwrap();
        let mut buf = vec![0; 16 << 10];
        assert_eq!(held.read(&mut buf), Some(s));
        w("pids.current", "5\n");
        w("pids.max", "100\n");
        let again = held.read(&mut buf).unwrap();
        assert_eq!(again.pids, 5);
        // While the files are young, the limits are read too (libcontainer may not have
        // written them at the first reading)...
        assert_eq!(again.pids_max, Some(100));
        // ... then not again within LIMITS_EVERY.
        held.opened -= LIMITS_YOUNG;
        held.read(&mut buf);
        w("pids.max", "200\n");
        assert_eq!(held.read(&mut buf).unwrap().pids_max, Some(100));
        assert!(StatFiles::open(&d.path().join("gone")).is_none());
        // A file larger than the buffer still reads whole.
        let mut small = vec![0; 8];
        assert_eq!(
            held.read(&mut small).unwrap().working_set_bytes,
            1_048_576 - 262_144
        );
    }
}
