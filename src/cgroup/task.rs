//! A task's cgroup, `tasks/<task-id>/`: the task-level ECS limits live here (DESIGN.md,
//! "Resource semantics"); the containers' cgroups are leaves below it, made by libcontainer
//! from each container's OCI resources.
//!
//! | ECS field            | file            |
//! | -------------------- | --------------- |
//! | task `cpu` (units)   | `cpu.max` = units/1024 CPUs over a 100 ms period |
//! | task `memory` (MiB)  | `memory.max`    |
//! | (always)             | `memory.swap.max` 0, `pids.max` |

use std::path::{Path, PathBuf};

use crate::capacity::UNITS_PER_CPU;

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}")]
pub struct TaskCgroupError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The limits written into a task's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskLimits {
    pub cpu_units: Option<u64>,
    pub memory_mib: Option<u64>,
    pub pids_max: u64,
    /// `memory.swap.max` in MiB: the sum of the containers' `maxSwap` (0: no swap). A
    /// container's own limit is below it, and a task ceiling of 0 would deny them all.
    #[serde(default)]
    pub swap_mib: u64,
}

pub(super) const CPU_PERIOD_US: u64 = 100_000;

/// `cpu.max` for a task's CPU units: 512 units is half a CPU, `50000 100000`.
pub fn cpu_max(units: Option<u64>) -> String {
    match units {
        Some(u) => format!(
            "{} {CPU_PERIOD_US}",
            (u * CPU_PERIOD_US / UNITS_PER_CPU).max(1000)
        ),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

/// What `memory.events` counts: `oom` (the limit was hit) and `oom_kill` (processes killed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub oom: u64,
    pub oom_kill: u64,
}

pub fn parse_memory_events(text: &str) -> MemoryEvents {
    let mut ev = MemoryEvents::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
            continue;
        };
        let v = v.parse().unwrap_or(0);
        match k {
            "oom" => ev.oom = v,
            "oom_kill" => ev.oom_kill = v,
            _ => {}
        }
    }
    ev
}

/// Reads `memory.events` of the cgroup directory `dir`; a missing file reads as no events.
pub fn memory_events(dir: &Path) -> MemoryEvents {
    std::fs::read_to_string(dir.join("memory.events"))
        .map(|t| parse_memory_events(&t))
        .unwrap_or_default()
}

fn write(dir: &Path, file: &'static str, value: &str) -> Result<(), TaskCgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|source| TaskCgroupError {
        action: "write",
        path,
        source,
    })
}

/// Creates the task cgroup `dir` with `limits`, and turns on the controllers its containers
/// need (those the parent offers).
pub fn create(dir: &Path, limits: &TaskLimits) -> Result<(), TaskCgroupError> {
    std::fs::create_dir_all(dir).map_err(|source| TaskCgroupError {
        action: "create",
        path: dir.to_owned(),
        source,
    })?;
    write(dir, "cpu.max", &cpu_max(limits.cpu_units))?;
    if let Some(m) = limits.memory_mib {
        write(dir, "memory.max", &(m * 1024 * 1024).to_string())?;
    }
    if dir.join("memory.swap.max").exists() {
        write(
            dir,
            "memory.swap.max",
            &limits.swap_mib.saturating_mul(1024 * 1024).to_string(),
        )?;
    }
    write(dir, "pids.max", &limits.pids_max.to_string())?;
    enable_controllers(dir)
}

/// Turns on below `dir` the controllers berth uses that `dir` has.
fn enable_controllers(dir: &Path) -> Result<(), TaskCgroupError> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let line: Vec<String> = ["cpu", "memory", "pids", "io"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    write(dir, "cgroup.subtree_control", &line.join(" "))
}

/// Sets a task's scope up from inside it: moves `pid` (the shim) from the scope into its leaf
/// `shim_leaf`, then turns the controllers on below the scope, which cgroup v2 allows only
/// once the scope itself holds no process.
pub fn settle_scope(scope: &Path, shim_leaf: &Path, pid: u32) -> Result<(), TaskCgroupError> {
    std::fs::create_dir_all(shim_leaf).map_err(|source| TaskCgroupError {
        action: "create",
        path: shim_leaf.to_owned(),
        source,
    })?;
    write(shim_leaf, "cgroup.procs", &pid.to_string())?;
    enable_controllers(scope)
}

/// Whether any process is left in `dir` or below it (`cgroup.events`: `populated`).
pub fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// SIGKILLs every process in `dir` and below (`cgroup.kill`, Linux 5.14) and waits up to
/// `wait` for them to be gone. Returns whether the cgroup is empty.
pub fn kill_all(dir: &Path, wait: std::time::Duration) -> Result<bool, TaskCgroupError> {
    if !populated(dir) {
        return Ok(true);
    }
    write(dir, "cgroup.kill", "1")?;
    let deadline = std::time::Instant::now() + wait;
    while populated(dir) {
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(true)
}

/// Removes every cgroup below `dir`, leaving `dir` itself. A scope's own directory is
/// systemd's to remove: taking it away before systemd reads the scope's emptied
/// `cgroup.events` leaves the unit active over a cgroup that no longer exists.
/// Cgroups still holding processes stay, and the error says which.
pub fn remove_below(dir: &Path) -> Result<(), TaskCgroupError> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_below(&e.path())?;
            match std::fs::remove_dir(e.path()) {
                // systemd may be trimming the same tree as it collects the scope.
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    return Err(TaskCgroupError {
                        action: "remove",
                        path: e.path(),
                        source,
                    })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_units_become_a_quota_of_the_period() {
        assert_eq!(cpu_max(Some(512)), "50000 100000");
        assert_eq!(cpu_max(Some(2048)), "200000 100000");
        assert_eq!(cpu_max(None), "max 100000");
        // The kernel refuses quotas under 1 ms.
        assert_eq!(cpu_max(Some(1)), "1000 100000");
    }

    #[test]
    fn memory_events_are_read_by_key() {
        let ev = parse_memory_events("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n");
        assert_eq!(
            ev,
            MemoryEvents {
                oom: 1,
                oom_kill: 1
            }
        );
    }

    #[test]
    fn create_writes_the_limits_over_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("t1");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let limits = TaskLimits {
            cpu_units: Some(512),
            memory_mib: Some(64),
            pids_max: 4096,
            swap_mib: 32,
        };
        std::fs::write(dir.join("memory.swap.max"), "max").unwrap();
        create(&dir, &limits).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("pids.max"), "4096");
        assert_eq!(read("memory.swap.max"), "33554432");
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
    }
}
