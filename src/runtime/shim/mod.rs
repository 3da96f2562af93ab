//! The per-task shim: a single-threaded process (`berthd shim TASK_DIR`) that creates the
//! task's containers with libcontainer one after another, each once its `dependsOn` holds,
//! runs their health checks, stays their parent as a subreaper,
//! carries their output to the logs, stops them (SIGTERM, then SIGKILL after `stopTimeout`)
//! when told by SIGTERM or when an essential container exits, and writes every start, exit
//! and failure to the task's status directory. It outlives berthd restarts (own session, own
//! cgroup), so berthd can always re-read what happened.

mod checks;
mod health;
mod holder;
mod logs;
mod order;
mod signals;
mod start;
mod vm;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::Container;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::plan::{self, ContainerPlan, Plan};
use super::report::{Done, Exited, OomScope, ShimStarted, StatusDir, Step};
use crate::cgroup::task::memory_events;
use crate::clock::now_us;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("cannot read the plan in {0}")]
    Plan(String, #[source] std::io::Error),
    #[error("cannot write the task status")]
    Status(#[source] std::io::Error),
    #[error("cannot install signal handlers")]
    Signals(#[source] nix::Error),
}

struct Running {
    plan: ContainerPlan,
    container: Container,
    pid: Pid,
    /// Its log's index in `Shim::logs`.
    log: usize,
    kill_at: Option<Instant>,
}

struct Shim {
    plan: Plan,
    status: StatusDir,
    journal: logs::Journal,
    running: Vec<Running>,
    /// Output pumps, with the index of their container's log in `logs`.
    pumps: Vec<(logs::Pump, usize)>,
    logs: Vec<logs::LogFile>,
    stopping: bool,
    /// Steps timed before the next container's start, reported with it.
    steps: Vec<Step>,
    /// The shim's clock: health checks and dependency waits count from it.
    clock: Instant,
    /// Containers not started yet, waiting for their dependencies.
    pending: Vec<ContainerPlan>,
    /// When the pending containers began to wait (ms of `clock`).
    waiting_since_ms: u64,
    /// Exit codes of the containers that ended.
    exit_codes: BTreeMap<String, i32>,
    /// Health checks of running containers, by container name.
    checks: BTreeMap<String, checks::Check>,
    /// The process holding the task's shared pid/ipc namespaces.
    holder: Option<Pid>,
}

/// The shim's whole life. Returns when every container has exited.
pub fn run(task_dir: &Path) -> Result<(), ShimError> {
    let plan =
        plan::read(task_dir).map_err(|e| ShimError::Plan(task_dir.display().to_string(), e))?;
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let status = StatusDir::new(task_dir);
    status.create().map_err(ShimError::Status)?;
    let sigfd = signals::install().map_err(ShimError::Signals)?;
    status
        .shim_started(&ShimStarted {
            pid: std::process::id(),
            at: now_us(),
        })
        .map_err(ShimError::Status)?;
    if let Some(vm) = plan.vm.clone() {
        vm::run(task_dir, &plan, &vm, &status, &sigfd)?;
        return status
            .done(&Done { at: now_us() })
            .map_err(ShimError::Status);
    }
    let mut shim = Shim {
        journal: logs::Journal::open(&plan.task_id, &plan.family),
        plan,
        status,
        running: Vec::new(),
        pumps: Vec::new(),
        logs: Vec::new(),
        stopping: false,
        steps: Vec::new(),
        clock: Instant::now(),
        pending: Vec::new(),
        waiting_since_ms: 0,
        exit_codes: BTreeMap::new(),
        checks: BTreeMap::new(),
        holder: None,
    };
    shim.begin()?;
    shim.supervise(&sigfd)?;
    if let Some(h) = shim.holder {
        holder::stop(h);
        let _ = waitpid(h, None);
    }
    shim.status
        .done(&Done { at: now_us() })
        .map_err(ShimError::Status)
}

impl Shim {
    /// SIGTERM to every container not yet told, SIGKILL after its stopTimeout.
    fn stop_all(&mut self) {
        self.stopping = true;
        self.pending.clear();
        for r in &mut self.running {
            if r.kill_at.is_none() {
                let _ = kill(r.pid, Signal::SIGTERM);
                r.kill_at = Some(Instant::now() + Duration::from_secs(r.plan.stop_timeout_secs));
            }
        }
    }

    fn handle_signals(&mut self, sigfd: &OwnedFd) {
        for sig in signals::drain(sigfd) {
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                self.stop_all();
            }
        }
        self.reap();
    }

    fn reap(&mut self) {
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let Some(pos) = self.running.iter().position(|r| r.pid == pid) else {
                self.probe_ended(pid, code);
                continue;
            };
            let r = self.running.remove(pos);
            self.exited(r, code);
        }
    }

    fn exited(&mut self, mut r: Running, code: i32) {
        let mine = memory_events(&r.plan.cgroup);
        let task = memory_events(&self.plan.task_cgroup);
        let scope = if mine.oom > 0 {
            OomScope::Container
        } else {
            OomScope::Task
        };
        let oom = (code == 137 && mine.oom_kill > 0).then_some(scope);
        let oom = oom.or_else(|| (code == 137 && task.oom_kill > 0).then_some(OomScope::Task));
        if let Some(log) = self.logs.get(r.log) {
            log.sync();
        }
        self.exit_codes.insert(r.plan.name.clone(), code);
        self.checks.remove(&r.plan.name);
        if let Err(e) = self.status.exited(
            &r.plan.name,
            &Exited {
                exit_code: code,
                oom,
                at: now_us(),
            },
        ) {
            eprintln!("berth-shim: cannot record exit of {}: {e}", r.plan.name);
        }
        if let Err(e) = r.container.delete(true) {
            eprintln!("berth-shim: delete {}: {e}", r.plan.name);
        }
        start::unmount(&r.plan);
        if r.plan.essential && !self.stopping {
            self.stop_all();
        }
    }

    fn supervise(&mut self, sigfd: &OwnedFd) -> Result<(), ShimError> {
        let mut drain_until: Option<Instant> = None;
        loop {
            self.handle_signals(sigfd);
            self.start_ready();
            self.run_checks();
            let now = Instant::now();
            for r in &mut self.running {
                if r.kill_at.is_some_and(|t| t <= now) {
                    let _ = kill(r.pid, Signal::SIGKILL);
                }
            }
            if self.running.is_empty() && self.pending.is_empty() {
                // Output still buffered in pipes is read for a moment after the last exit.
                let until = *drain_until.get_or_insert(now + Duration::from_secs(2));
                if self.pumps.is_empty() || now >= until {
                    break;
                }
            }
            self.wait(sigfd);
        }
        for (p, idx) in &mut self.pumps {
            p.pump(&mut self.logs[*idx], &self.journal);
        }
        Ok(())
    }

    /// Waits up to a second for a signal or output, and moves the output.
    fn wait(&mut self, sigfd: &OwnedFd) {
        let ready: Vec<bool> = {
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                self.pumps
                    .iter()
                    .map(|(p, _)| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN)),
            );
            let _ = poll(&mut fds, PollTimeout::from(250u16));
            fds.iter()
                .skip(1)
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        let mut closed = Vec::new();
        for (i, ready) in ready.into_iter().enumerate() {
            if ready {
                let (p, idx) = &mut self.pumps[i];
                if !p.pump(&mut self.logs[*idx], &self.journal) {
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            self.pumps.remove(i);
        }
    }
}

/// A shim's failure on one line, for its stderr (`shim.log`).
pub fn describe(e: &ShimError) -> String {
    one_line(e)
}

/// An error and its causes on one line: the status files carry one reason string.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}
