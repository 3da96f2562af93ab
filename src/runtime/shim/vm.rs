//! The shim of a microVM task: it boots the task's VM (the VMM in the task's cgroup, so the
//! task's limits hold it), hands the agent the containers' config.json as berthd made them,
//! and writes what the agent reports (starts, exits, OOM kills, failures) into the same status
//! files as a container task's shim. SIGTERM becomes the agent's Stop; the last exit, or the
//! VMM's death, ends the task.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{signals, start, ShimError};
use crate::cgroup::task as task_cgroup;
use crate::clock::now_us;
use crate::runtime::gate;
use crate::runtime::plan::{ContainerPlan, Plan, VmPlan};
use crate::runtime::report::{Exited, Failed, OomScope, Started, StatusDir};
use crate::vm::image::{self, AgentImage, GUEST_MODULES};
use crate::vm::machine::{self, Machine};
use crate::vm::protocol::{AgentMessage, HostMessage, VmContainer};
use crate::vm::vmm::{Disk, Qemu, VmSpec};
use crate::vm::{disks, kernel};

/// How long a powered-off VM gets to exit before it is killed.
const POWER_OFF_WAIT: Duration = Duration::from_secs(30);

struct VmShim<'a> {
    plan: &'a Plan,
    status: &'a StatusDir,
    task_dir: PathBuf,
    stopping: bool,
    started: BTreeSet<String>,
    ended: BTreeSet<String>,
    /// Each layer directory and the serial of its disk.
    layers: Vec<(PathBuf, String)>,
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
    };
    let mut machine = match shim.boot(vm) {
        Ok(m) => m,
        Err(reason) => return shim.fail(reason),
    };
    let containers: Result<Vec<VmContainer>, String> = plan
        .containers
        .iter()
        .map(|c| guest_container(c, &shim.layers))
        .collect();
    let containers = match containers {
        Ok(c) => c,
        Err(reason) => return shim.fail(reason),
    };
    if let Err(e) = machine.send(&HostMessage::Run { containers }) {
        return shim.fail(format!("CannotStartContainerError: microVM: {e}"));
    }
    shim.supervise(&mut machine, sigfd)?;
    if let Err(e) = machine.power_off(POWER_OFF_WAIT) {
        eprintln!("berth-shim: {e}");
    }
    Ok(())
}

impl VmShim<'_> {
    /// Everything before the agent's hello: the scope, the task's cgroup, the kernel, the
    /// initramfs, the layer disks, the VMM.
    fn boot(&mut self, vm: &VmPlan) -> Result<Machine, String> {
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
        };
        let qemu = Qemu {
            binary: vm.vmm.clone(),
        };
        let timeout = Duration::from_secs(vm.boot_timeout_secs);
        let (m, _hello) = machine::boot(&qemu, &spec, timeout).map_err(|e| {
            format!(
                "CannotStartContainerError: microVM: {e}{}",
                oom_note(&p.task_cgroup)
            )
        })?;
        Ok(m)
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

    fn supervise(&mut self, m: &mut Machine, sigfd: &OwnedFd) -> Result<(), ShimError> {
        while self.ended.len() < self.plan.containers.len() {
            if let Some(status) = m.exited() {
                return self.lost(self.vmm_gone(m, status));
            }
            let (signal, message) = {
                let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
                if let Some(c) = m.channel() {
                    fds.push(PollFd::new(c, PollFlags::POLLIN));
                }
                let _ = poll(&mut fds, PollTimeout::from(250u16));
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), fds.get(1).is_some_and(ready))
            };
            if signal {
                for sig in signals::drain(sigfd) {
                    if sig == libc::SIGTERM || sig == libc::SIGINT {
                        self.stop(m);
                    }
                }
            }
            if message {
                match m.receive(Duration::from_secs(30)) {
                    Ok(msg) => self.heard(m, msg)?,
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
        Ok(())
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
            if let Err(e) = m.send(&HostMessage::Stop) {
                eprintln!("berth-shim: {e}");
            }
        }
    }

    fn heard(&mut self, m: &mut Machine, msg: AgentMessage) -> Result<(), ShimError> {
        match msg {
            AgentMessage::Started { name, pid } => {
                self.started.insert(name.clone());
                let s = Started {
                    pid,
                    at: now_us(),
                    steps: Vec::new(),
                };
                self.status.started(&name, &s).map_err(ShimError::Status)?;
            }
            AgentMessage::Exited { name, code, oom } => {
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
            other => eprintln!("berth-shim: unexpected from the agent: {other:?}"),
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
        match self.started.iter().next().cloned() {
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

/// A container as the agent gets it: berthd's config.json with the host's specifics taken
/// out: its cgroup is the guest's, its namespaces new ones (the host's netns and holder paths
/// mean nothing inside), and host-path bind mounts (volumes, network files, the init binary)
/// left out, as the VM cannot see the host's files.
fn guest_container(c: &ContainerPlan, layers: &[(PathBuf, String)]) -> Result<VmContainer, String> {
    let path = c.bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    guest_config(&mut config, &c.name);
    Ok(VmContainer {
        name: c.name.clone(),
        config,
        layers: c
            .lower
            .iter()
            .rev()
            .filter_map(|l| layers.iter().find(|(p, _)| p == l).map(|(_, s)| s.clone()))
            .collect(),
        stop_timeout_secs: c.stop_timeout_secs,
    })
}

fn guest_config(config: &mut serde_json::Value, name: &str) {
    config["linux"]["cgroupsPath"] = format!("/berth/{name}").into();
    if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if let Some(o) = n.as_object_mut() {
                o.remove("path");
            }
        }
    }
    if let Some(mounts) = config["mounts"].as_array_mut() {
        mounts.retain(|m| {
            let bind = m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            !bind
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_config_has_the_guest_cgroup_new_namespaces_and_no_host_binds() {
        let mut c = serde_json::json!({
            "linux": {
                "cgroupsPath": "/berth.slice/berth-ab.scope/task/web",
                "namespaces": [{"type": "network", "path": "/run/berth/netns/ab"}, {"type": "mount"}]
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/berth/tasks/ab/hosts", "options": ["rbind", "ro"]},
                {"destination": "/data", "source": "/var/lib/berth/volumes/x", "options": ["rbind"]}
            ]
        });
        guest_config(&mut c, "web");
        assert_eq!(c["linux"]["cgroupsPath"], "/berth/web");
        assert_eq!(
            c["linux"]["namespaces"],
            serde_json::json!([{"type": "network"}, {"type": "mount"}])
        );
        let dests: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/proc"]);
    }
}
