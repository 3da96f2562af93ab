//! What a shim tells berthd, as files in the task's `status/` directory, each written
//! atomically and (but for a container's health) never rewritten: berthd (or a restarted berthd) reads them to learn what
//! happened, even while it was down. The shim writes, berthd only reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::vm::protocol::Usage;

/// Which limit's OOM killer ended a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OomScope {
    Container,
    Task,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimStarted {
    pub pid: u32,
    pub at: u64,
}

/// How long one step of starting a container took, microseconds: what `bench/run` reads to
/// name where launch time goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub pid: u32,
    pub at: u64,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exited {
    pub exit_code: i32,
    pub oom: Option<OomScope>,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    pub container: String,
    pub reason: String,
    pub at: u64,
}

/// A container's health as its checks last judged it (ECS's `healthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Unknown,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "UNKNOWN",
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
        }
    }
}

/// The one status file rewritten in place (atomically): each change of a container's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: HealthStatus,
    /// Failed checks in a row.
    pub failing_streak: u64,
    /// Why the last check failed (exit code, timeout, could not run), when it did.
    pub last_failure: Option<String>,
    pub at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub at: u64,
}

/// Everything the status directory says, as berthd reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub shim: Option<ShimStarted>,
    pub started: BTreeMap<String, Started>,
    pub exited: BTreeMap<String, Exited>,
    pub failed: Option<Failed>,
    pub done: Option<Done>,
    pub health: BTreeMap<String, Health>,
}

/// Writer and reader of one task's status directory.
#[derive(Debug, Clone)]
pub struct StatusDir {
    dir: PathBuf,
}

impl StatusDir {
    pub fn new(task_dir: &Path) -> StatusDir {
        StatusDir {
            dir: task_dir.join("status"),
        }
    }

    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    fn put<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_atomic(&self.dir.join(name), &bytes)
    }

    pub fn shim_started(&self, v: &ShimStarted) -> std::io::Result<()> {
        self.put("shim.json", v)
    }

    /// A container's file: its name checked where it becomes a path, whoever sent it (a
    /// microVM's agent names containers too).
    fn put_of<T: Serialize>(&self, container: &str, kind: &str, value: &T) -> std::io::Result<()> {
        let name = crate::names::segment("container", container)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.put(&format!("{name}.{kind}.json"), value)
    }

    pub fn started(&self, container: &str, v: &Started) -> std::io::Result<()> {
        self.put_of(container, "started", v)
    }

    pub fn exited(&self, container: &str, v: &Exited) -> std::io::Result<()> {
        self.put_of(container, "exit", v)
    }

    pub fn health(&self, container: &str, v: &Health) -> std::io::Result<()> {
        self.put_of(container, "health", v)
    }

    pub fn failed(&self, v: &Failed) -> std::io::Result<()> {
        self.put("failed.json", v)
    }

    pub fn done(&self, v: &Done) -> std::io::Result<()> {
        self.put("done.json", v)
    }

    fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The shim's own record alone, without reading the rest of the directory.
    pub fn shim(&self) -> Option<ShimStarted> {
        self.get("shim.json")
    }

    /// Reads the whole directory; files not yet written read as absent.
    pub fn observe(&self) -> Observation {
        let mut obs = Observation {
            shim: self.shim(),
            failed: self.get("failed.json"),
            done: self.get("done.json"),
            ..Observation::default()
        };
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return obs;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(c) = name.strip_suffix(".started.json") {
                if let Some(v) = self.get(&name) {
                    obs.started.insert(c.to_string(), v);
                }
            } else if let Some(c) = name.strip_suffix(".exit.json") {
                if let Some(v) = self.get(&name) {
                    obs.exited.insert(c.to_string(), v);
                }
            } else if let Some(c) = name.strip_suffix(".health.json") {
                if let Some(v) = self.get(&name) {
                    obs.health.insert(c.to_string(), v);
                }
            }
        }
        obs
    }
}

/// A microVM task's containers' usage as its agent last reported it. Beside the status
/// directory, not in it: it changes every few seconds and is no news for the engine.
const GUEST_USAGE_FILE: &str = "usage.json";

pub fn write_guest_usage(task_dir: &Path, usage: &[Usage]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(usage).map_err(std::io::Error::other)?;
    write_atomic(&task_dir.join(GUEST_USAGE_FILE), &bytes)
}

/// The last usage the agent reported, by container; empty for a container task.
pub fn read_guest_usage(task_dir: &Path) -> BTreeMap<String, Usage> {
    let usage: Vec<Usage> = std::fs::read(task_dir.join(GUEST_USAGE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    usage.into_iter().map(|u| (u.name.clone(), u)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_usage_reads_back_by_container() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_guest_usage(d.path()).is_empty());
        let web = Usage {
            name: "web".into(),
            cpu_usec: 5,
            memory_bytes: 4096,
        };
        write_guest_usage(d.path(), std::slice::from_ref(&web)).unwrap();
        assert_eq!(read_guest_usage(d.path())["web"], web);
    }

    #[test]
    fn a_container_name_that_climbs_writes_nothing_outside_the_status_directory() {
        let d = tempfile::tempdir().unwrap();
        let s = StatusDir::new(&d.path().join("task"));
        s.create().unwrap();
        let exit = Exited {
            exit_code: 0,
            oom: None,
            at: 1,
        };
        for name in ["../../victim", "/etc/x", "a/b", ""] {
            assert!(s.exited(name, &exit).is_err(), "{name:?} was written");
        }
        let mut left: Vec<_> = walk(d.path());
        left.sort();
        assert_eq!(left, [d.path().join("task"), d.path().join("task/status")]);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path());
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    #[test]
    fn what_the_shim_writes_berthd_reads() {
        let d = tempfile::tempdir().unwrap();
        let s = StatusDir::new(d.path());
        s.create().unwrap();
        assert_eq!(s.observe(), Observation::default());
        s.shim_started(&ShimStarted { pid: 7, at: 1 }).unwrap();
        s.started(
            "web",
            &Started {
                pid: 9,
                at: 2,
                steps: vec![],
            },
        )
        .unwrap();
        s.exited(
            "web",
            &Exited {
                exit_code: 137,
                oom: Some(OomScope::Container),
                at: 3,
            },
        )
        .unwrap();
        let h = Health {
            status: HealthStatus::Healthy,
            failing_streak: 0,
            last_failure: None,
            at: 3,
        };
        s.health("web", &h).unwrap();
        s.done(&Done { at: 4 }).unwrap();
        let o = s.observe();
        assert_eq!(o.health["web"], h);
        assert_eq!(o.shim.unwrap().pid, 7);
        assert_eq!(o.started["web"].pid, 9);
        assert_eq!(o.exited["web"].oom, Some(OomScope::Container));
        assert_eq!(o.done, Some(Done { at: 4 }));
        assert_eq!(o.failed, None);
    }
}
