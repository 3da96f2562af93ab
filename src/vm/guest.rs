//! A microVM task's containers, inside the guest: cgroup v2 for them, their root filesystems
//! (the image's read-only layer disks, found by serial and mounted once, joined by overlayfs
//! with an upper in the guest's memory), and libcontainer creating each from the config.json
//! the host made. The initramfs is the guest's root, where pivot_root(2) is refused, so
//! libcontainer moves the root instead (`no_pivot`).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

use super::output::{Chunk, Stream};
use super::probes::{CheckRequest, Probes};
use super::protocol::{Usage, VmContainer};
use crate::cgroup::task::memory_events;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const STATE_ROOT: &str = "/run/berth/state";
const BUNDLES: &str = "/run/berth/c";
const LAYERS: &str = "/run/berth/layers";
/// The task-scoped volumes, in the guest's memory: the host rewrites their binds to here.
pub const VOLUMES: &str = "/run/berth/volumes";

/// Mounts cgroup v2 and hands the usual controllers down from the root, where the agent stays
/// (the root cgroup may hold processes and have children with controllers).
pub fn setup_cgroups() -> Result<(), String> {
    let _ = std::fs::create_dir_all(CGROUP_ROOT);
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("cgroup2"),
        CGROUP_ROOT,
        Some("cgroup2"),
        flags,
        None::<&str>,
    )
    .map_err(|e| format!("mount cgroup2 on {CGROUP_ROOT}: {e}"))?;
    let available = std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.controllers"))
        .unwrap_or_default();
    let wanted: Vec<String> = ["cpu", "memory", "pids", "io"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    std::fs::write(
        Path::new(CGROUP_ROOT).join("cgroup.subtree_control"),
        wanted.join(" "),
    )
    .map_err(|e| format!("enable {} in {CGROUP_ROOT}: {e}", wanted.join(" ")))
}

struct Running {
    name: String,
    container: Container,
    cgroup: PathBuf,
    stop_timeout: Duration,
    kill_at: Option<Instant>,
}

/// How one container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub name: String,
    pub code: i32,
    pub oom: bool,
}

/// The running containers, by init pid.
#[derive(Default)]
pub struct Containers {
    running: BTreeMap<i32, Running>,
    mounted_layers: Vec<String>,
    /// Output streams, kept until their end (after the container's, when a child of it
    /// holds them open).
    streams: Vec<Stream>,
    probes: Probes,
}

/// What ended since the last look: containers, and health checks with their results.
#[derive(Debug, Default)]
pub struct Reaped {
    pub containers: Vec<Ended>,
    pub checks: Vec<(String, Option<String>)>,
}

impl Containers {
    /// Creates and starts one container; returns its init pid.
    pub fn start(&mut self, c: &VmContainer) -> Result<u32, String> {
        let bundle = Path::new(BUNDLES).join(&c.name);
        let rootfs = bundle.join("rootfs");
        let lower = self.layers(&c.layers)?;
        overlay(&lower, &bundle, &rootfs)?;
        let mut config = c.config.clone();
        config["root"] = serde_json::json!({ "path": "rootfs", "readonly": false });
        make_volumes(&config)?;
        let cgroup = Path::new(CGROUP_ROOT).join(
            config["linux"]["cgroupsPath"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/'),
        );
        let text = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
        let config_path = bundle.join("config.json");
        std::fs::write(&config_path, text)
            .map_err(|e| format!("write {}: {e}", config_path.display()))?;
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        let (out_r, out_w) = pipe().map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let (err_r, err_w) = pipe().map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let null =
            File::open("/dev/null").map_err(|e| format!("CannotStartContainerError: {e}"))?;
        let mut container = ContainerBuilder::new(c.name.clone(), SyscallType::default())
            .with_root_path(STATE_ROOT)
            .map_err(|e| format!("CannotStartContainerError: {e}"))?
            .with_stdin(OwnedFd::from(null))
            .with_stdout(out_w)
            .with_stderr(err_w)
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .with_no_pivot(true)
            .build()
            .map_err(|e| {
                let _ = umount2(&rootfs, MntFlags::MNT_DETACH);
                format!("CannotCreateContainerError: {e}")
            })?;
        if let Err(e) = container.start() {
            let _ = container.delete(true);
            let _ = umount2(&rootfs, MntFlags::MNT_DETACH);
            return Err(format!("CannotStartContainerError: {e}"));
        }
        let pid = container
            .pid()
            .ok_or_else(|| "CannotStartContainerError: no init process".to_string())?;
        self.streams.push(Stream::new(out_r, &c.name, false));
        self.streams.push(Stream::new(err_r, &c.name, true));
        self.running.insert(
            pid.as_raw(),
            Running {
                name: c.name.clone(),
                container,
                cgroup,
                stop_timeout: Duration::from_secs(c.stop_timeout_secs),
                kill_at: None,
            },
        );
        Ok(pid.as_raw() as u32)
    }

    /// Mounts each layer disk (by serial) read-only once; returns their mount points.
    fn layers(&mut self, serials: &[String]) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::new();
        for serial in serials {
            let target = Path::new(LAYERS).join(serial);
            if !self.mounted_layers.contains(serial) {
                let dev = disk_with_serial(Path::new("/sys/block"), serial)
                    .ok_or_else(|| format!("no layer disk with serial {serial}"))?;
                std::fs::create_dir_all(&target)
                    .map_err(|e| format!("{}: {e}", target.display()))?;
                mount(
                    Some(&dev),
                    &target,
                    Some("ext4"),
                    MsFlags::MS_RDONLY,
                    None::<&str>,
                )
                .map_err(|e| format!("mount layer {serial} ({}): {e}", dev.display()))?;
                self.mounted_layers.push(serial.clone());
            }
            out.push(target);
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The output streams still open, to wait on.
    pub fn output_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.streams.iter().map(Stream::fd).collect()
    }

    /// What the containers (or `only` the one named) wrote since the last call; ended streams
    /// are dropped.
    pub fn output(&mut self, only: Option<&str>) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        self.streams.retain_mut(|s| {
            if only.is_some_and(|n| n != s.name) {
                return true;
            }
            let (chunk, open) = s.drain();
            chunks.extend(chunk);
            open
        });
        chunks
    }

    /// Each running container's CPU time and memory, from its cgroup.
    pub fn usage(&self) -> Vec<Usage> {
        self.running
            .values()
            .map(|r| Usage {
                name: r.name.clone(),
                cpu_usec: cpu_usec(&r.cgroup),
                memory_bytes: std::fs::read_to_string(r.cgroup.join("memory.current"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0),
            })
            .collect()
    }

    /// The containers and checks that ended since the last call, without waiting; other
    /// orphans (PID 1 inherits them all) are reaped on the way.
    pub fn reap(&mut self) -> Reaped {
        let mut reaped = Reaped::default();
        loop {
            let (pid, code) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
                Ok(_) => continue,
            };
            if let Some(mut r) = self.running.remove(&pid.as_raw()) {
                // Read before delete removes the cgroup.
                let oom = code == 137 && memory_events(&r.cgroup).oom_kill > 0;
                let _ = r.container.delete(true);
                reaped.containers.push(Ended {
                    name: r.name,
                    code,
                    oom,
                });
            } else if let Some(checked) = self.probes.ended(pid.as_raw(), code) {
                reaped.checks.push(checked);
            }
        }
    }

    /// Starts a health check of a running container.
    pub fn check(&mut self, c: &CheckRequest) -> Result<(), String> {
        if !self.running.values().any(|r| r.name == c.name) {
            return Err(format!(
                "could not run the check: container {} is not running",
                c.name
            ));
        }
        self.probes.spawn(Path::new(STATE_ROOT), c)
    }

    /// SIGTERM to every container not yet told; each is killed after its stop timeout.
    pub fn stop_all(&mut self) {
        let now = Instant::now();
        for (pid, r) in &mut self.running {
            if r.kill_at.is_none() {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
                r.kill_at = Some(now + r.stop_timeout);
            }
        }
    }

    /// SIGKILL to the containers whose stop timeout has passed (all of them with `now`
    /// `None`).
    pub fn kill_overdue(&mut self, now: Option<Instant>) {
        if let Some(now) = now {
            self.probes.kill_overdue(now);
        }
        for (pid, r) in &self.running {
            if now.is_none_or(|now| r.kill_at.is_some_and(|t| t <= now)) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

/// overlayfs of `lower` (lowest first) with its upper and work directories in `bundle`.
fn overlay(lower: &[PathBuf], bundle: &Path, rootfs: &Path) -> Result<(), String> {
    let upper = bundle.join("upper");
    let work = bundle.join("work");
    for d in [&upper, &work, &rootfs.to_path_buf()] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let lowerdir: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| format!("overlay mount on {}: {e}", rootfs.display()))
}

fn cpu_usec(cgroup: &Path) -> u64 {
    std::fs::read_to_string(cgroup.join("cpu.stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Makes the directories of the task-scoped volumes the container binds (the first container
/// to bind one makes it; the others share it).
fn make_volumes(config: &serde_json::Value) -> Result<(), String> {
    let sources = config["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["source"].as_str())
        .filter(|s| Path::new(s).starts_with(VOLUMES));
    for dir in sources {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("CannotStartContainerError: {dir}: {e}"))?;
    }
    Ok(())
}

/// `/dev/vdX` for the virtio disk whose sysfs `serial` is `serial`.
fn disk_with_serial(sys_block: &Path, serial: &str) -> Option<PathBuf> {
    std::fs::read_dir(sys_block).ok()?.flatten().find_map(|e| {
        let s = std::fs::read_to_string(e.path().join("serial")).ok()?;
        (s.trim() == serial).then(|| Path::new("/dev").join(e.file_name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_disk_is_found_by_its_serial() {
        let d = tempfile::tempdir().unwrap();
        for (dev, serial) in [("vda", "upper"), ("vdb", "l0")] {
            std::fs::create_dir_all(d.path().join(dev)).unwrap();
            std::fs::write(d.path().join(dev).join("serial"), serial).unwrap();
        }
        assert_eq!(
            disk_with_serial(d.path(), "l0"),
            Some(PathBuf::from("/dev/vdb"))
        );
        assert_eq!(disk_with_serial(d.path(), "l9"), None);
    }
}
