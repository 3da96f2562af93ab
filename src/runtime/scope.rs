//! Asks systemd for a task's scope over D-Bus (`StartTransientUnit` with the shim's pid), on a
//! connection kept for berthd's life, as runc's systemd driver does. It replaced a
//! `systemd-run --scope` per launch: one exec and one bus handshake fewer on every launch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use zbus::Variant as Value;

const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const SYSTEMD_MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// How long systemd gets to move the shim into its scope once the unit is asked for.
const MOVE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot reach systemd on the system bus ({SYSTEMD}); berth starts each task in a systemd scope: {0}")]
    Bus(#[source] zbus::Error),
    #[error("systemd refused the scope {unit}: {source}")]
    Refused {
        unit: String,
        #[source]
        source: zbus::Error,
    },
    #[error("systemd did not move the shim (pid {pid}) into {unit} within {secs} s")]
    NotMoved { unit: String, pid: u32, secs: u64 },
}

/// What one task's scope is: its unit name, slice, description, and the shim it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequest {
    pub unit: String,
    pub slice: String,
    pub description: String,
    pub pid: u32,
    /// The scope's cgroup as `/proc/PID/cgroup` shows it (`/berth.slice/berth-ID.scope`).
    pub cgroup: PathBuf,
}

impl ScopeRequest {
    /// The unit's properties: the task's processes are delegated to berth (it makes the task
    /// and container cgroups below), berth enforces pids itself, and systemd forgets the unit
    /// once it is empty even when it failed (`systemd-run --collect`).
    fn properties(&self) -> Vec<(&'static str, Value<'_>)> {
        vec![
            ("Description", Value::from(self.description.as_str())),
            ("Slice", Value::from(self.slice.as_str())),
            ("Delegate", Value::from(true)),
            ("TasksMax", Value::from(u64::MAX)),
            ("CollectMode", Value::from("inactive-or-failed")),
            ("PIDs", Value::from(vec![self.pid])),
        ]
    }
}

/// berthd's connection to systemd, made on first use and made again after it broke.
#[derive(Debug, Default)]
pub struct Scopes {
    conn: Mutex<Option<zbus::Connection>>,
}

impl Scopes {
    async fn connection(&self) -> Result<zbus::Connection, ScopeError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = zbus::connection::Builder::system()
            .build()
            .await
            .map_err(ScopeError::Bus)?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// That systemd answers on the bus: checked once at berthd's start, so a host without it
    /// is refused at once rather than at the first task.
    pub async fn check(&self) -> Result<(), ScopeError> {
        let conn = self.connection().await?;
        let reply = conn
            .call_method(
                Some(SYSTEMD),
                SYSTEMD_PATH,
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
            .await;
        reply.map(|_| ()).map_err(|e| {
            self.forget();
            ScopeError::Bus(e)
        })
    }

    fn forget(&self) {
        if let Ok(mut c) = self.conn.try_lock() {
            *c = None;
        }
    }

    /// Starts the scope and waits until systemd has moved the shim into it.
    pub async fn start(&self, req: &ScopeRequest) -> Result<(), ScopeError> {
        let conn = self.connection().await?;
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let reply = conn
            .call_method(
                Some(SYSTEMD),
                SYSTEMD_PATH,
                Some(SYSTEMD_MANAGER),
                "StartTransientUnit",
                &(req.unit.as_str(), "fail", req.properties(), aux),
            )
            .await;
        if let Err(e) = reply {
            if !matches!(e, zbus::Error::MethodError(..)) {
                self.forget();
            }
            return Err(ScopeError::Refused {
                unit: req.unit.clone(),
                source: e,
            });
        }
        // The job runs after the reply; the move is done when /proc says so.
        let deadline = Instant::now() + MOVE_WAIT;
        let mut pause = Duration::from_millis(1);
        while !in_cgroup(req.pid, &req.cgroup) {
            if Instant::now() >= deadline {
                return Err(ScopeError::NotMoved {
                    unit: req.unit.clone(),
                    pid: req.pid,
                    secs: MOVE_WAIT.as_secs(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// Whether `pid` is in `cgroup` or below it (cgroup v2's `0::PATH` line).
fn in_cgroup(pid: u32, cgroup: &Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|text| cgroup_of(&text).is_some_and(|p| p.starts_with(cgroup)))
        .unwrap_or(false)
}

fn cgroup_of(proc_cgroup: &str) -> Option<&Path> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(Path::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_line_names_the_cgroup() {
        let text = "1:name=systemd:/x\n0::/berth.slice/berth-ab.scope\n";
        assert_eq!(
            cgroup_of(text),
            Some(Path::new("/berth.slice/berth-ab.scope"))
        );
        assert_eq!(cgroup_of("1:cpu:/x\n"), None);
    }

    #[test]
    fn a_scope_delegates_and_holds_the_shim() {
        let req = ScopeRequest {
            unit: "berth-ab.scope".into(),
            slice: "berth.slice".into(),
            description: "berth task ab (web)".into(),
            pid: 42,
            cgroup: "/berth.slice/berth-ab.scope".into(),
        };
        let props = req.properties();
        let get = |k: &str| props.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PIDs"), Some(Value::from(vec![42u32])));
        assert_eq!(get("Delegate"), Some(Value::from(true)));
        assert_eq!(get("Slice"), Some(Value::from("berth.slice")));
        assert_eq!(get("CollectMode"), Some(Value::from("inactive-or-failed")));
    }

    #[test]
    fn this_process_is_in_its_own_cgroup_and_not_in_another() {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let Some(own) = cgroup_of(&own) else {
            return; // a host without cgroup v2: nothing to compare
        };
        let me = std::process::id();
        assert!(in_cgroup(me, own));
        assert!(!in_cgroup(me, Path::new("/berth.slice/berth-none.scope")));
    }
}
