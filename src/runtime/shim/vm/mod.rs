//! The shim of a microVM task: it boots the task's VM (the VMM in the task's cgroup, so the
//! task's limits hold it), hands the agent each container's config.json as berthd made it when
//! its `dependsOn` conditions hold, judges the health checks the agent runs, and writes what the agent reports (starts, exits, OOM kills, failures) into the same status
//! files as a container task's shim, its containers' output into their logs, and its usage
//! beside them. SIGTERM becomes the agent's Stop; the last exit, the VMM's death, or an agent
//! silent past its timeout ends the task.

mod guest_config;
mod order;
mod relay;
mod vet;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{signals, start, ShimError};
use crate::cgroup::task as task_cgroup;
use crate::clock::now_us;
use crate::runtime::gate;
use crate::runtime::plan::{Plan, VmPlan};
use crate::runtime::report::{self, Exited, Failed, OomScope, Started, StatusDir};
use crate::vm::image::{self, AgentImage, GUEST_MODULES};
use crate::vm::machine::{self, Machine};
use crate::vm::protocol::{AgentMessage, HostMessage};
use crate::vm::vmm::{Disk, Qemu, VmSpec};
use crate::vm::{disks, kernel};
use guest_config::guest_container;
use relay::{Heartbeat, Output};

/// How long a powered-off VM gets to exit before it is killed.
const POWER_OFF_WAIT: Duration = Duration::from_secs(30);
/// How often the agent is pinged (its answer carries the containers' usage).
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// Past the longest stopTimeout, how long the agent gets to report the exits of a stop before
/// the VM is killed: a guest that ignores the stop must not keep its task running.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Frames taken from the agent in one second; past it the shim reads no more until the next
/// second (the guest waits, as a writer to a full pipe does).
const MAX_FRAMES_PER_SEC: u32 = 1000;
/// The console log is emptied past this size.
const MAX_CONSOLE_BYTES: u64 = 4 << 20;

struct VmShim<'a> {
    plan: &'a Plan,
    status: &'a StatusDir,
    task_dir: PathBuf,
    stopping: bool,
    started: BTreeSet<String>,
    ended: BTreeSet<String>,
    /// Each layer directory and the serial of its disk.
    layers: Vec<(PathBuf, String)>,
    output: Output,
    /// The agent went silent: the VM is killed, not asked to power off.
    hung: bool,
    /// Containers not yet sent to the agent, in the definition's order.
    waiting: Vec<order::Waiting>,
    waiting_since_ms: u64,
    /// Containers sent to the agent.
    requested: BTreeSet<String>,
    exit_codes: BTreeMap<String, i32>,
    checks: BTreeMap<String, order::VmCheck>,
    clock: Instant,
    /// When a stop began, the time by which the agent must have reported every exit, and
    /// how long that was.
    stop_deadline: Option<Instant>,
    stop_waits: Duration,
    /// The agent's messages refused (names outside the plan, replays, unasked answers).
    dropped: u64,
}

/// The whole life of a microVM task's shim. Returns when the task has ended.
pub(super) fn run(
    task_dir: &Path,
    plan: &Plan,
    vm: &VmPlan,
    status: &StatusDir,
    sigfd: &OwnedFd,
) -> Result<(), ShimError> {
    let mut shim = VmShim {
        plan,
        status,
        task_dir: task_dir.to_owned(),
        stopping: false,
        started: BTreeSet::new(),
        ended: BTreeSet::new(),
        layers: Vec::new(),
        output: Output::new(plan),
        hung: false,
        waiting: Vec::new(),
        waiting_since_ms: 0,
        requested: BTreeSet::new(),
        exit_codes: BTreeMap::new(),
        checks: BTreeMap::new(),
        clock: Instant::now(),
        stop_deadline: None,
        stop_waits: Duration::ZERO,
        dropped: 0,
    };
    let mut machine = match shim.boot(vm, sigfd) {
        Ok(Some(m)) => m,
        // Stopped while it booted: nothing ran, nothing to report but the stop.
        Ok(None) => return Ok(()),
        Err(reason) => return shim.fail(reason),
    };
    for c in &plan.containers {
        match guest_container(c, task_dir, &shim.layers) {
            Ok(guest) => shim.waiting.push(order::Waiting {
                plan: c.clone(),
                guest,
            }),
            Err(reason) => return shim.fail(reason),
        }
    }
    shim.start_clock();
    shim.supervise(&mut machine, sigfd, vm)?;
    if shim.hung {
        // Dropped, the machine's VMM is killed and reaped.
        return Ok(());
    }
    if let Err(e) = machine.power_off(POWER_OFF_WAIT) {
        eprintln!("berth-shim: {e}");
    }
    Ok(())
}

impl VmShim<'_> {
    /// Everything before the agent's hello: the scope, the task's cgroup, the kernel, the
    /// initramfs, the layer disks, the VMM.
    fn boot(&mut self, vm: &VmPlan, sigfd: &OwnedFd) -> Result<Option<Machine>, String> {
        gate::wait()?;
        let p = self.plan;
        start::settle(p)?;
        let vmm_cgroup = p.task_cgroup.join("vmm");
        std::fs::create_dir_all(&vmm_cgroup)
            .map_err(|e| format!("CannotCreateContainerError: {}: {e}", vmm_cgroup.display()))?;
        let k = kernel::find(&vm.kernel_dir).map_err(|e| e.to_string())?;
        let initramfs = image::cached(
            &AgentImage {
                agent: &vm.agent,
                kernel: &k,
                modules: GUEST_MODULES,
            },
            &vm.cache_dir,
        )
        .map_err(|e| format!("CannotStartContainerError: microVM: {e}"))?;
        let spec = VmSpec {
            kernel: k.image.clone(),
            initramfs,
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            accel: vm.accel,
            console_log: self.task_dir.join("console.log"),
            agent_socket: vm.socket.clone(),
            disks: self.layer_disks(&vm.cache_dir)?,
            cgroup: Some(vmm_cgroup),
            run_as: vm.run_as.clone(),
            agent_fd: None,
        };
        let qemu = Qemu {
            binary: vm.vmm.clone(),
        };
        let timeout = Duration::from_secs(vm.boot_timeout_secs);
        let mut stop = || {
            signals::drain(sigfd)
                .iter()
                .any(|s| *s == libc::SIGTERM || *s == libc::SIGINT)
        };
        match machine::boot(&qemu, &spec, timeout, &mut stop) {
            Ok((m, _hello)) => Ok(Some(m)),
            Err(machine::MachineError::Stopped { .. }) => Ok(None),
            Err(e) => Err(format!(
                "CannotStartContainerError: microVM: {e}{}",
                oom_note(&p.task_cgroup)
            )),
        }
    }

    /// Records the task's failure against the first container not yet ended (before any
    /// started: the task failed to start).
    fn fail(&self, reason: String) -> Result<(), ShimError> {
        let container = self
            .plan
            .containers
            .iter()
            .find(|c| !self.ended.contains(&c.name))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        self.fail_as(container, reason)
    }

    fn fail_as(&self, container: String, reason: String) -> Result<(), ShimError> {
        self.status
            .failed(&Failed {
                container,
                reason,
                at: now_us(),
            })
            .map_err(ShimError::Status)
    }

    fn supervise(
        &mut self,
        m: &mut Machine,
        sigfd: &OwnedFd,
        vm: &VmPlan,
    ) -> Result<(), ShimError> {
        let agent_timeout_secs = vm.agent_timeout_secs;
        let timeout = Duration::from_secs(agent_timeout_secs);
        // While the agent creates a container or execs a health check in one it answers
        // nothing: under emulation either can take as long as a boot, and is allowed as long.
        let busy_timeout = timeout.max(Duration::from_secs(vm.boot_timeout_secs));
        let mut heartbeat = Heartbeat::new(Instant::now(), PING_INTERVAL);
        let mut frames = (Instant::now(), 0u32);
        // A stop that came during the boot: no container starts.
        self.signals(m, sigfd);
        loop {
            self.start_ready(m)?;
            if self.finished() {
                return Ok(());
            }
            self.run_checks(m);
            if let Some(status) = m.exited() {
                return self.lost(self.vmm_gone(m, status));
            }
            m.bound_console(MAX_CONSOLE_BYTES);
            let now = Instant::now();
            if self.stop_deadline.is_some_and(|d| now >= d) {
                self.hung = true;
                return self.lost(format!(
                    "the microVM's agent did not end its containers within {}s of the stop; \
                     its VMM ({}) was killed{}",
                    self.stop_waits.as_secs(),
                    self.vmm_name(),
                    m.console()
                ));
            }
            let limit = if self.busy() { busy_timeout } else { timeout };
            if let Some(quiet) = heartbeat.silent(now, limit) {
                self.hung = true;
                return self.lost(format!(
                    "the microVM's agent did not answer for {}s (vm_agent_timeout_secs {}); \
                     its VMM ({}) was killed{}",
                    quiet.as_secs(),
                    agent_timeout_secs,
                    self.vmm_name(),
                    m.console()
                ));
            }
            if let Some(seq) = heartbeat.ping_due(now) {
                if let Err(e) = m.send(&HostMessage::Ping { seq }) {
                    // Cut mid-frame or refused: the channel cannot be spoken on again.
                    self.hung = true;
                    return self.lost(format!(
                        "the microVM's agent stopped taking messages ({e}); its VMM ({}) was killed",
                        self.vmm_name()
                    ));
                }
            }
            if now.duration_since(frames.0) >= Duration::from_secs(1) {
                frames = (now, 0);
            }
            let (signal, message) = wait(m, sigfd, frames.1 < MAX_FRAMES_PER_SEC);
            if signal {
                self.signals(m, sigfd);
            }
            if message {
                frames.1 += 1;
                match m.receive(timeout) {
                    Ok(msg) => {
                        heartbeat.heard(Instant::now());
                        self.heard(m, msg)?
                    }
                    Err(e) => {
                        // A dead VMM closes the channel first; say which died.
                        let reason = match wait_exit(m, Duration::from_secs(2)) {
                            Some(status) => self.vmm_gone(m, status),
                            None => format!("the microVM's agent: {e}"),
                        };
                        return self.lost(reason);
                    }
                }
            }
        }
    }

    /// SIGTERM or SIGINT: the task stops.
    fn signals(&mut self, m: &mut Machine, sigfd: &OwnedFd) {
        for sig in signals::drain(sigfd) {
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                self.stop(m);
            }
        }
    }

    /// The agent is at work it answers nothing during: a container sent to it that has
    /// neither started nor failed yet, or a health check it has not answered.
    fn busy(&self) -> bool {
        let creating = self
            .requested
            .iter()
            .any(|n| !self.started.contains(n) && !self.ended.contains(n));
        creating || self.checks.values().any(|c| c.in_flight())
    }

    fn vmm_gone(&self, m: &Machine, status: std::process::ExitStatus) -> String {
        format!(
            "the microVM's VMM ({}) exited ({status}){}{}",
            self.vmm_name(),
            oom_note(&self.plan.task_cgroup),
            m.console()
        )
    }

    fn vmm_name(&self) -> String {
        self.plan
            .vm
            .as_ref()
            .and_then(|v| v.vmm.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "VMM".into())
    }

    fn stop(&mut self, m: &mut Machine) {
        if !self.stopping {
            self.stopping = true;
            self.waiting.clear();
            let now = Instant::now();
            // A stopTimeout past any clock's reach waits as long as a clock can.
            self.stop_waits = self.stop_wait();
            self.stop_deadline = now.checked_add(self.stop_waits);
            if let Err(e) = m.send(&HostMessage::Stop) {
                // A guest that does not take the stop is not waited for.
                eprintln!("berth-shim: {e}");
                self.stop_deadline = Some(now);
            }
        }
    }

    /// How long a stop may take: the longest stopTimeout, then the grace; and when the agent
    /// is at work it answers nothing during (a create, a check's exec), as long again as that
    /// work is allowed (a boot's time), for it takes the stop only after. Under emulation a
    /// check's exec took a minute in CI, and the stop that came during it found the VM killed.
    fn stop_wait(&self) -> Duration {
        let longest = self
            .plan
            .containers
            .iter()
            .map(|c| c.stop_timeout_secs)
            .max()
            .unwrap_or(0);
        let wait = Duration::from_secs(longest).saturating_add(STOP_GRACE);
        match (&self.plan.vm, self.busy()) {
            (Some(vm), true) => wait.saturating_add(Duration::from_secs(vm.boot_timeout_secs)),
            _ => wait,
        }
    }

    /// Counts a refused message; says so for the first ones and then at each power of two.
    fn drop_message(&mut self, why: &str) {
        self.dropped += 1;
        if self.dropped <= 10 || self.dropped.is_power_of_two() {
            eprintln!(
                "berth-shim: dropped the agent's {why} ({} dropped so far)",
                self.dropped
            );
        }
    }

    fn heard(&mut self, m: &mut Machine, msg: AgentMessage) -> Result<(), ShimError> {
        let asked: BTreeSet<String> = self
            .checks
            .iter()
            .filter(|(_, c)| c.in_flight())
            .map(|(n, _)| n.clone())
            .collect();
        let known = vet::Known {
            requested: &self.requested,
            started: &self.started,
            ended: &self.ended,
            asked: &asked,
        };
        if let Some(why) = vet::refusal(&msg, &known) {
            self.drop_message(&why);
            return Ok(());
        }
        match msg {
            AgentMessage::Started { name, pid } => {
                self.started.insert(name.clone());
                self.watch_health(&name);
                let s = Started {
                    pid,
                    at: now_us(),
                    steps: Vec::new(),
                };
                self.status.started(&name, &s).map_err(ShimError::Status)?;
            }
            AgentMessage::Output { name, stderr, data } => {
                self.output.write(self.plan, &name, stderr, &data);
            }
            AgentMessage::Pong { usage, .. } => {
                let usage = vet::usage_of_started(usage, &self.started);
                if let Err(e) = report::write_guest_usage(&self.task_dir, &usage) {
                    eprintln!("berth-shim: usage: {e}");
                }
            }
            AgentMessage::Checked { name, failure } => self.checked(&name, failure),
            AgentMessage::Exited { name, code, oom } => {
                self.output.flush(&name);
                self.exit_codes.insert(name.clone(), code);
                self.checks.remove(&name);
                self.exited(&name, code, oom)?;
                let essential = self
                    .plan
                    .containers
                    .iter()
                    .any(|c| c.name == name && c.essential);
                if essential {
                    self.stop(m);
                }
            }
            AgentMessage::Failed { name, reason } => {
                self.ended.insert(name.clone());
                self.status
                    .failed(&Failed {
                        container: name,
                        reason,
                        at: now_us(),
                    })
                    .map_err(ShimError::Status)?;
                self.stop(m);
            }
            AgentMessage::PoweringOff
            | AgentMessage::Hello { .. }
            | AgentMessage::Refused { .. } => {}
        }
        Ok(())
    }

    fn exited(&mut self, name: &str, code: i32, oom: bool) -> Result<(), ShimError> {
        self.ended.insert(name.to_string());
        let e = Exited {
            exit_code: code,
            oom: oom.then_some(OomScope::Container),
            at: now_us(),
        };
        self.status.exited(name, &e).map_err(ShimError::Status)
    }

    /// The VM is gone under the task: every started container not yet ended ends as killed
    /// (137), and the task fails with `reason`, against a container that ran when one did.
    fn lost(&mut self, reason: String) -> Result<(), ShimError> {
        let open: Vec<String> = self
            .started
            .iter()
            .filter(|n| !self.ended.contains(*n))
            .cloned()
            .collect();
        // The failure first: the engine may look between two status files, and the first
        // reason it sees is the task's.
        let first_ran = self
            .plan
            .containers
            .iter()
            .find(|c| self.started.contains(&c.name))
            .map(|c| c.name.clone());
        match first_ran {
            Some(ran) => self.fail_as(ran, reason)?,
            None => self.fail(format!("CannotStartContainerError: {reason}"))?,
        }
        for name in &open {
            self.exited(name, 137, false)?;
        }
        Ok(())
    }
}

/// When the task's cgroup OOM-killed something (the VMM, since the guest's own kills stay
/// inside it), the words that say so and the fix.
fn oom_note(task_cgroup: &Path) -> String {
    let kills = task_cgroup::memory_events(task_cgroup).oom_kill;
    if kills == 0 {
        return String::new();
    }
    let max = std::fs::read_to_string(task_cgroup.join("memory.max")).unwrap_or_default();
    format!(
        "; the task's cgroup OOM-killed the VMM (memory.max {}): raise vm_overhead_mib",
        max.trim()
    )
}

/// Waits up to 250 ms for a signal or (when `listen`) a word from the agent; says which came.
fn wait(m: &Machine, sigfd: &OwnedFd, listen: bool) -> (bool, bool) {
    let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
    if let Some(c) = m.channel().filter(|_| listen) {
        fds.push(PollFd::new(c, PollFlags::POLLIN));
    }
    let _ = poll(&mut fds, PollTimeout::from(250u16));
    let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
    (ready(&fds[0]), fds.get(1).is_some_and(ready))
}

/// The VMM's exit status if it ends within `wait`.
fn wait_exit(m: &mut Machine, wait: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(s) = m.exited() {
            return Some(s);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl VmShim<'_> {
    /// One read-only disk per distinct layer, serials `l0`, `l1`, ... in first-use order.
    fn layer_disks(&mut self, cache: &Path) -> Result<Vec<Disk>, String> {
        let mut disks: Vec<Disk> = Vec::new();
        for layer in self
            .plan
            .containers
            .iter()
            .flat_map(|c| c.lower.iter().rev())
        {
            if self.layers.iter().any(|(l, _)| l == layer) {
                continue;
            }
            let path = disks::layer_disk(layer, cache)
                .map_err(|e| format!("CannotPullContainerError: layer disk: {e}"))?;
            let serial = format!("l{}", disks.len());
            self.layers.push((layer.clone(), serial.clone()));
            disks.push(Disk {
                serial,
                path,
                read_only: true,
            });
        }
        Ok(disks)
    }
}
