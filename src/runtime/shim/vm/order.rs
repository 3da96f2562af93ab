//! The order and health of a microVM task's containers, kept on the host: each container goes
//! to the agent once its `dependsOn` conditions hold (the verdicts a container task's shim
//! uses), and its health checks run in the guest when the same `HealthState` says, each result
//! judged here and written to the status directory as a container task's are.

use std::time::Instant;

use super::VmShim;
use crate::runtime::plan::{ContainerPlan, HealthPlan};
use crate::runtime::shim::health::{self, HealthState};
use crate::runtime::shim::order::{self, Progress, Verdict};
use crate::runtime::shim::ShimError;
use crate::vm::machine::Machine;
use crate::vm::protocol::{HostMessage, VmContainer};

/// A container's health check, as the host keeps it.
pub(super) struct VmCheck {
    plan: HealthPlan,
    cwd: String,
    state: HealthState,
    /// Sent to the agent, its result not yet back.
    in_flight: bool,
    /// Counted as failed for going unanswered; its late answer may still pass it.
    given_up: bool,
    /// When it was sent (the shim's clock, ms).
    sent_at_ms: u64,
}

/// Time past a check's own timeout that the agent has to answer it before the check counts as
/// failed, so the health is judged even of an agent stuck in a check's exec. The check stays
/// in flight till its answer comes (the agent answers nothing while it makes the exec, and is
/// busy, not lost, all that time: CI saw a minute per exec under nested emulation, and an
/// agent declared lost when the shim stopped waiting for the answer), and no other is sent.
const UNANSWERED_GRACE_MS: u64 = 30_000;

/// Whether a check sent at `sent_at_ms` with `timeout_secs` has gone unanswered too long.
fn unanswered(sent_at_ms: u64, now_ms: u64, timeout_secs: u64) -> bool {
    now_ms.saturating_sub(sent_at_ms) > timeout_secs.saturating_mul(1000) + UNANSWERED_GRACE_MS
}

impl VmCheck {
    /// Sent to the agent, its answer not yet back: only then is an answer taken.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight
    }
}

/// A container waiting for its turn, with what the agent gets of it.
pub(super) struct Waiting {
    pub plan: ContainerPlan,
    pub guest: VmContainer,
}

impl VmShim<'_> {
    pub(super) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn progress(&self, name: &str) -> Progress {
        if let Some(code) = self.exit_codes.get(name) {
            return Progress::Exited { code: *code };
        }
        if self.started.contains(name) {
            let health = self.checks.get(name).map(|c| c.state.status);
            return Progress::Running { health };
        }
        Progress::NotStarted
    }

    /// Sends the agent every waiting container whose dependencies hold; fails the task when
    /// one can no longer hold or has waited past its `startTimeout`.
    pub(super) fn start_ready(&mut self, m: &mut Machine) -> Result<(), ShimError> {
        let waited_secs = (self.now_ms() - self.waiting_since_ms) / 1000;
        let mut i = 0;
        while i < self.waiting.len() && !self.stopping {
            let c = &self.waiting[i].plan;
            let verdict = order::verdict(
                &c.name,
                &c.depends_on,
                |n| self.progress(n),
                waited_secs,
                c.start_timeout_secs,
            );
            match verdict {
                Verdict::Wait => i += 1,
                Verdict::Fail(reason) => {
                    let name = c.name.clone();
                    self.fail_as(name, reason)?;
                    self.stop(m);
                }
                Verdict::Start => {
                    let w = self.waiting.remove(i);
                    let name = w.plan.name.clone();
                    let run = HostMessage::Run {
                        containers: vec![w.guest],
                    };
                    match m.send(&run) {
                        Ok(()) => {
                            self.requested.insert(name);
                        }
                        Err(e) => {
                            self.fail_as(name, format!("CannotStartContainerError: microVM: {e}"))?;
                            self.stop(m);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every container sent has ended, and none waits.
    pub(super) fn finished(&self) -> bool {
        self.waiting.is_empty() && self.requested.iter().all(|n| self.ended.contains(n))
    }

    /// Begins judging the health of a container just started, if it has a check.
    pub(super) fn watch_health(&mut self, name: &str) {
        let Some(c) = self.plan.containers.iter().find(|c| c.name == name) else {
            return;
        };
        let Some(plan) = &c.health else { return };
        let check = VmCheck {
            state: HealthState::new(&plan.check, self.now_ms()),
            plan: plan.clone(),
            cwd: c.cwd.clone(),
            in_flight: false,
            given_up: false,
            sent_at_ms: 0,
        };
        self.checks.insert(name.to_string(), check);
        self.report_health(name);
    }

    /// Asks the agent for the checks that are due.
    pub(super) fn run_checks(&mut self, m: &mut Machine) {
        if self.stopping {
            return;
        }
        let now = self.now_ms();
        let mut lost = Vec::new();
        for (name, c) in &mut self.checks {
            if c.in_flight
                && !c.given_up
                && unanswered(c.sent_at_ms, now, c.plan.check.timeout_secs)
            {
                c.given_up = true;
                let why = "the microVM's agent did not answer the check".to_string();
                if c.state.record(Err(why), now) {
                    lost.push(name.clone());
                }
            }
            if c.in_flight || !c.state.due(now) {
                continue;
            }
            let check = HostMessage::Check {
                name: name.clone(),
                command: c.plan.check.command.clone(),
                uid: c.plan.uid,
                gid: c.plan.gid,
                cwd: c.cwd.clone(),
                timeout_secs: c.plan.check.timeout_secs,
            };
            // Sent or not, one at a time: a channel that fails a send is a VM being lost,
            // which the supervision loop reports.
            if let Err(e) = m.send(&check) {
                eprintln!("berth-shim: {e}");
            }
            c.in_flight = true;
            c.given_up = false;
            c.sent_at_ms = now;
        }
        for name in lost {
            self.report_health(&name);
        }
    }

    /// A check's result from the agent.
    pub(super) fn checked(&mut self, name: &str, failure: Option<String>) {
        let now = self.now_ms();
        let Some(c) = self.checks.get_mut(name) else {
            return;
        };
        c.in_flight = false;
        // A failure already counted when the shim stopped waiting is not counted twice; a late
        // pass stands.
        let counted = std::mem::take(&mut c.given_up);
        if counted && failure.is_some() {
            return;
        }
        let result = failure.map_or(Ok(()), Err);
        if c.state.record(result, now) {
            self.report_health(name);
        }
    }

    fn report_health(&self, name: &str) {
        let Some(c) = self.checks.get(name) else {
            return;
        };
        health::report(self.status, name, &c.state);
    }

    /// The clock the order and the checks keep, started with the supervision.
    pub(super) fn start_clock(&mut self) {
        self.clock = Instant::now();
        self.waiting_since_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_counts_as_unanswered_only_past_its_timeout_and_the_grace() {
        assert!(!unanswered(1_000, 1_000 + 5_000 + UNANSWERED_GRACE_MS, 5));
        assert!(unanswered(1_000, 1_001 + 5_000 + UNANSWERED_GRACE_MS, 5));
        // A clock read before the send (never, but harmless) is not a loss.
        assert!(!unanswered(10_000, 0, 0));
    }
}
