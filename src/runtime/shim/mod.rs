//! The per-task shim: a single-threaded process (`berthd shim TASK_DIR`) that creates the
//! task's containers with libcontainer one after another, stays their parent as a subreaper,
//! carries their output to the logs, stops them (SIGTERM, then SIGKILL after `stopTimeout`)
//! when told by SIGTERM or when an essential container exits, and writes every start, exit
//! and failure to the task's status directory. It outlives berthd restarts (own session, own
//! cgroup), so berthd can always re-read what happened.

mod logs;
mod signals;

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::plan::{self, ContainerPlan, Plan};
use super::report::{Done, Exited, Failed, OomScope, ShimStarted, Started, StatusDir, Step};
use crate::cgroup::task::{self as task_cgroup, memory_events};
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
    log: File,
    kill_at: Option<Instant>,
}

struct Shim {
    plan: Plan,
    status: StatusDir,
    journal: logs::Journal,
    running: Vec<Running>,
    /// Output pumps, with the index of their container's log in `logs`.
    pumps: Vec<(logs::Pump, usize)>,
    logs: Vec<File>,
    stopping: bool,
    /// Steps timed before the next container's start, reported with it.
    steps: Vec<Step>,
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
    let mut shim = Shim {
        journal: logs::Journal::open(&plan.task_id, &plan.family),
        plan,
        status,
        running: Vec::new(),
        pumps: Vec::new(),
        logs: Vec::new(),
        stopping: false,
        steps: Vec::new(),
    };
    shim.start_all(&sigfd)?;
    shim.supervise(&sigfd)?;
    shim.status
        .done(&Done { at: now_us() })
        .map_err(ShimError::Status)
}

impl Shim {
    /// The task's cgroups, from inside its scope: the shim's leaf, then the task's limits.
    fn settle(&self) -> Result<(), String> {
        let p = &self.plan;
        task_cgroup::settle_scope(&p.scope_cgroup, &p.shim_cgroup, std::process::id())
            .and_then(|()| task_cgroup::create(&p.task_cgroup, &p.limits))
            .map_err(|e| format!("CannotCreateContainerError: task cgroup: {}", one_line(&e)))
    }

    fn start_all(&mut self, sigfd: &OwnedFd) -> Result<(), ShimError> {
        let t = Instant::now();
        let settled = self.settle();
        self.step("cgroups", t);
        if let Err(reason) = settled {
            let first = self.plan.containers.first().map(|c| c.name.clone());
            return self
                .status
                .failed(&Failed {
                    container: first.unwrap_or_default(),
                    reason,
                    at: now_us(),
                })
                .map_err(ShimError::Status);
        }
        for c in self.plan.containers.clone() {
            self.handle_signals(sigfd);
            if self.stopping {
                break;
            }
            match self.start(&c) {
                Ok(()) => {}
                Err(reason) => {
                    self.status
                        .failed(&Failed {
                            container: c.name.clone(),
                            reason,
                            at: now_us(),
                        })
                        .map_err(ShimError::Status)?;
                    unmount(&c);
                    self.stop_all();
                    break;
                }
            }
        }
        Ok(())
    }

    fn step(&mut self, name: &str, since: Instant) {
        self.steps.push(Step {
            name: name.into(),
            us: since.elapsed().as_micros() as u64,
        });
    }

    fn start(&mut self, c: &ContainerPlan) -> Result<(), String> {
        let t = Instant::now();
        mount_rootfs(c).map_err(|e| format!("CannotStartContainerError: root filesystem: {e}"))?;
        self.step("rootfs", t);
        let t = Instant::now();
        let log = logs::open_log(&c.log)
            .map_err(|e| format!("CannotStartContainerError: log {}: {e}", c.log.display()))?;
        let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC);
        let (out_r, out_w) = pipe().map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let (err_r, err_w) = pipe().map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let null =
            File::open("/dev/null").map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let built = ContainerBuilder::new(c.container_id.clone(), SyscallType::default())
            .with_root_path(&self.plan.runtime_root)
            .map_err(|e| format!("CannotStartContainerError: {e}"))?
            .with_stdin(OwnedFd::from(null))
            .with_stdout(out_w)
            .with_stderr(err_w)
            .as_init(&c.bundle)
            .with_systemd(false)
            .with_detach(true)
            .build();
        let mut container = built.map_err(|e| format!("CannotCreateContainerError: {e}"))?;
        self.step("create", t);
        let t = Instant::now();
        if let Err(e) = container.start() {
            let _ = container.delete(true);
            return Err(format!("CannotStartContainerError: {e}"));
        }
        self.step("start", t);
        let pid = container
            .pid()
            .ok_or_else(|| "CannotStartContainerError: no init process".to_string())?;
        self.status
            .started(
                &c.name,
                &Started {
                    pid: pid.as_raw() as u32,
                    at: now_us(),
                    steps: std::mem::take(&mut self.steps),
                },
            )
            .map_err(|e| format!("cannot record the start: {e}"))?;
        let idx = self.logs.len();
        self.logs.push(log.try_clone().map_err(|e| e.to_string())?);
        for (fd, is_err) in [(out_r, false), (err_r, true)] {
            let _ = nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
            );
            self.pumps.push((logs::Pump::new(fd, &c.name, is_err), idx));
        }
        self.running.push(Running {
            plan: c.clone(),
            container,
            pid,
            log,
            kill_at: None,
        });
        Ok(())
    }

    /// SIGTERM to every container not yet told, SIGKILL after its stopTimeout.
    fn stop_all(&mut self) {
        self.stopping = true;
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
        let _ = r.log.sync_data();
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
        unmount(&r.plan);
        if r.plan.essential && !self.stopping {
            self.stop_all();
        }
    }

    fn supervise(&mut self, sigfd: &OwnedFd) -> Result<(), ShimError> {
        let mut drain_until: Option<Instant> = None;
        loop {
            self.handle_signals(sigfd);
            let now = Instant::now();
            for r in &mut self.running {
                if r.kill_at.is_some_and(|t| t <= now) {
                    let _ = kill(r.pid, Signal::SIGKILL);
                }
            }
            if self.running.is_empty() {
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

fn mount_rootfs(c: &ContainerPlan) -> Result<(), String> {
    for d in [&c.upper, &c.work, &c.rootfs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let lower: Vec<String> = c.lower.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        c.upper.display(),
        c.work.display()
    );
    mount(
        Some("overlay"),
        &c.rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| format!("overlay mount on {}: {e}", c.rootfs.display()))
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

fn unmount(c: &ContainerPlan) {
    let _ = umount2(&c.rootfs, MntFlags::MNT_DETACH);
}
