//! What this host has: memory and online CPUs, and which boot this is, read from `/proc` and
//! `/sys` under injectable roots. Pure parsing plus one read each; no policy.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

/// The host's raw resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    pub cpus: u32,
    pub memory_mib: u64,
}

/// Reads `MemTotal` from `proc_root/meminfo` and the online CPU list from
/// `sys_root/devices/system/cpu/online`.
pub fn read_resources(proc_root: &Path, sys_root: &Path) -> Result<HostResources, HostError> {
    let meminfo = proc_root.join("meminfo");
    let online = sys_root.join("devices/system/cpu/online");
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| HostError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let memory_kib = mem_total_kib(&read(&meminfo)?).ok_or_else(|| HostError::Format {
        path: meminfo.clone(),
        message: "no MemTotal line".into(),
    })?;
    let cpus = count_cpu_list(&read(&online)?).ok_or_else(|| HostError::Format {
        path: online.clone(),
        message: "not a CPU list such as 0-3,5".into(),
    })?;
    Ok(HostResources {
        cpus,
        memory_mib: memory_kib / 1024,
    })
}

/// This boot's identity (`proc_root/sys/kernel/random/boot_id`): a new value means the host
/// restarted, and nothing of the previous boot runs any more.
pub fn boot_id(proc_root: &Path) -> Result<String, HostError> {
    let path = proc_root.join("sys/kernel/random/boot_id");
    let id = std::fs::read_to_string(&path).map_err(|source| HostError::Read {
        path: path.clone(),
        source,
    })?;
    match id.trim() {
        "" => Err(HostError::Format {
            path,
            message: "empty".into(),
        }),
        id => Ok(id.to_string()),
    }
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Counts a kernel CPU list such as `0-3,6,8-9`.
fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("0-3,6,8-9\n"), Some(7));
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn reads_fake_proc_and_sys() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("meminfo"),
            "MemTotal:        2014256 kB\nMemFree: 1 kB\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.path().join("devices/system/cpu")).unwrap();
        std::fs::write(d.path().join("devices/system/cpu/online"), "0-1\n").unwrap();
        let r = read_resources(d.path(), d.path()).unwrap();
        assert_eq!(
            r,
            HostResources {
                cpus: 2,
                memory_mib: 1967
            }
        );
    }
}
