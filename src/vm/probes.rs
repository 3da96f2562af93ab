//! Health checks inside a microVM: each runs in its container as the agent's child (see
//! `runtime::exec`), is killed past its timeout, and its end becomes a pass or a failure that
//! says why, which the agent reports for the host to judge the container's health.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::runtime::exec::{self, ExecAs};

struct Probe {
    name: String,
    deadline: Instant,
    timeout_secs: u64,
    timed_out: bool,
}

/// The checks running now, by pid.
#[derive(Default)]
pub struct Probes {
    running: BTreeMap<i32, Probe>,
}

/// A check to run.
pub struct CheckRequest<'a> {
    pub name: &'a str,
    pub command: &'a [String],
    pub who: ExecAs<'a>,
    pub timeout_secs: u64,
}

impl Probes {
    /// Starts a check of container `name` (its libcontainer id in `state_root`).
    pub fn spawn(&mut self, state_root: &Path, c: &CheckRequest) -> Result<(), String> {
        let pid = exec::spawn(state_root, c.name, c.command, &c.who)?;
        self.running.insert(
            pid.as_raw(),
            Probe {
                name: c.name.to_string(),
                deadline: Instant::now() + Duration::from_secs(c.timeout_secs),
                timeout_secs: c.timeout_secs,
                timed_out: false,
            },
        );
        Ok(())
    }

    /// The container and the result of the check that was `pid`, if it was one.
    pub fn ended(&mut self, pid: i32, code: i32) -> Option<(String, Option<String>)> {
        let p = self.running.remove(&pid)?;
        let failure = match (p.timed_out, code) {
            (true, _) => Some(format!("timed out after {} s", p.timeout_secs)),
            (false, 0) => None,
            (false, code) => Some(format!("exit code {code}")),
        };
        Some((p.name, failure))
    }

    /// Kills the checks past their timeout.
    pub fn kill_overdue(&mut self, now: Instant) {
        for (pid, p) in &mut self.running {
            if !p.timed_out && now >= p.deadline {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                p.timed_out = true;
            }
        }
    }
}
