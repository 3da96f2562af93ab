//! Health checks of the running containers: each runs every interval inside its container
//! (see `runtime::exec`), is killed past its timeout, and every change of a container's health is
//! written to the status directory for berthd.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::health::{self, HealthState};
use super::Shim;
use crate::runtime::exec::{self, ExecAs};
use crate::runtime::plan::{ContainerPlan, HealthPlan};

pub struct Check {
    plan: HealthPlan,
    container_id: String,
    cwd: String,
    pub state: HealthState,
    /// The check running now: its pid, when it is given up, whether it was.
    running: Option<(Pid, u64, bool)>,
}

impl Shim {
    /// Begins watching a container just started, if it has a health check.
    pub(super) fn watch_health(&mut self, c: &ContainerPlan) {
        let Some(plan) = &c.health else { return };
        let check = Check {
            state: HealthState::new(&plan.check, self.now_ms()),
            plan: plan.clone(),
            container_id: c.container_id.clone(),
            cwd: c.cwd.clone(),
            running: None,
        };
        self.checks.insert(c.name.clone(), check);
        self.report_health(&c.name);
    }

    /// Starts the checks that are due and kills those past their timeout.
    pub(super) fn run_checks(&mut self) {
        if self.stopping {
            return;
        }
        let now = self.now_ms();
        let root = self.plan.runtime_root.clone();
        let mut failed_to_run = Vec::new();
        for (name, c) in &mut self.checks {
            match &mut c.running {
                Some((pid, deadline, timed_out)) if now >= *deadline && !*timed_out => {
                    let _ = kill(*pid, Signal::SIGKILL);
                    *timed_out = true;
                }
                Some(_) => {}
                None if c.state.due(now) => {
                    let who = ExecAs {
                        uid: c.plan.uid,
                        gid: c.plan.gid,
                        cwd: &c.cwd,
                    };
                    match exec::spawn(&root, &c.container_id, &c.plan.check.command, &who) {
                        Ok(pid) => c.running = Some((pid, c.state.deadline(now), false)),
                        Err(why) => failed_to_run.push((name.clone(), why)),
                    }
                }
                None => {}
            }
        }
        for (name, why) in failed_to_run {
            self.record(&name, Err(why));
        }
    }

    /// A child that was not a container ended: if it was a health check, its result counts.
    pub(super) fn probe_ended(&mut self, pid: Pid, code: i32) {
        let found = self
            .checks
            .iter_mut()
            .find_map(|(name, c)| match c.running {
                Some((p, _, timed_out)) if p == pid => {
                    c.running = None;
                    Some((name.clone(), timed_out, c.plan.check.timeout_secs))
                }
                _ => None,
            });
        let Some((name, timed_out, timeout)) = found else {
            return;
        };
        let result = match (timed_out, code) {
            (true, _) => Err(format!("timed out after {timeout} s")),
            (false, 0) => Ok(()),
            (false, code) => Err(format!("exit code {code}")),
        };
        self.record(&name, result);
    }

    fn record(&mut self, name: &str, result: Result<(), String>) {
        let now = self.now_ms();
        let Some(c) = self.checks.get_mut(name) else {
            return;
        };
        if c.state.record(result, now) {
            self.report_health(name);
        }
    }

    fn report_health(&self, name: &str) {
        let Some(c) = self.checks.get(name) else {
            return;
        };
        health::report(&self.status, name, &c.state);
    }
}
