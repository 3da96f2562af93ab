//! Starting the task's containers: the task's cgroups first, the holder of shared namespaces
//! when asked, then each container as soon as its `dependsOn` holds (a dependency that can no
//! longer hold, or misses `startTimeout`, fails the task with the reason), on an overlay of
//! its image's layers, through libcontainer.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Instant;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::order::{self, Progress, Verdict};
use super::{holder, logs, one_line, Running, Shim, ShimError};
use crate::cgroup::task as task_cgroup;
use crate::clock::now_us;
use crate::runtime::gate;
use crate::runtime::plan::{ContainerPlan, Plan};
use crate::runtime::report::{Failed, Started, Step};

/// The task's cgroups, from inside its scope: the shim's leaf, then the task's limits. The
/// same for container and microVM tasks.
pub(super) fn settle(p: &Plan) -> Result<(), String> {
    task_cgroup::settle_scope(&p.scope_cgroup, &p.shim_cgroup, std::process::id())
        .and_then(|()| task_cgroup::create(&p.task_cgroup, &p.limits))
        .map_err(|e| format!("CannotCreateContainerError: task cgroup: {}", one_line(&e)))
}

impl Shim {
    /// Everything before the first container: cgroups, the namespace holder; then the
    /// containers that wait for nothing.
    pub(super) fn begin(&mut self) -> Result<(), ShimError> {
        let t = Instant::now();
        let scoped = gate::wait();
        self.step("scope", t);
        let t = Instant::now();
        let settled = scoped
            .and_then(|()| settle(&self.plan))
            .and_then(|()| self.hold_namespaces());
        self.step("cgroups", t);
        if let Err(reason) = settled {
            let first = self.plan.containers.first().map(|c| c.name.clone());
            return self.fail(first.unwrap_or_default(), reason);
        }
        self.pending = self.plan.containers.clone();
        self.waiting_since_ms = self.now_ms();
        self.start_ready();
        Ok(())
    }

    fn hold_namespaces(&mut self) -> Result<(), String> {
        if self.plan.shared_namespaces.is_empty() {
            return Ok(());
        }
        let pid = holder::spawn(&self.plan.shared_namespaces).map_err(|e| {
            format!("CannotCreateContainerError: the task's shared namespaces: {e}")
        })?;
        self.holder = Some(pid);
        Ok(())
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn progress(&self, name: &str) -> Progress {
        if let Some(code) = self.exit_codes.get(name) {
            return Progress::Exited { code: *code };
        }
        if self.running.iter().any(|r| r.plan.name == name) {
            let health = self.checks.get(name).map(|c| c.state.status);
            return Progress::Running { health };
        }
        Progress::NotStarted
    }

    /// Starts every pending container whose dependencies hold, until none is left to start.
    pub(super) fn start_ready(&mut self) {
        let waited_secs = (self.now_ms() - self.waiting_since_ms) / 1000;
        let mut i = 0;
        while i < self.pending.len() && !self.stopping {
            let c = &self.pending[i];
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
                    self.report_failure(name, reason);
                }
                Verdict::Start => {
                    let c = self.pending.remove(i);
                    if let Err(reason) = self.start(&c) {
                        unmount(&c);
                        self.report_failure(c.name.clone(), reason);
                    }
                    // A start may satisfy a container looked at before: look again.
                    i = 0;
                }
            }
        }
    }

    fn report_failure(&mut self, container: String, reason: String) {
        if let Err(e) = self.fail(container, reason) {
            eprintln!("berth-shim: {e}");
        }
        self.stop_all();
    }

    fn fail(&self, container: String, reason: String) -> Result<(), ShimError> {
        let failed = Failed {
            container,
            reason,
            at: now_us(),
        };
        self.status.failed(&failed).map_err(ShimError::Status)
    }

    fn step(&mut self, name: &str, since: Instant) {
        self.steps.push(Step {
            name: name.into(),
            us: since.elapsed().as_micros() as u64,
        });
    }

    fn start(&mut self, c: &ContainerPlan) -> Result<(), String> {
        let t = Instant::now();
        if let Some(h) = self.holder {
            holder::join(&c.bundle, h, &self.plan.shared_namespaces)
                .map_err(|e| format!("CannotCreateContainerError: {e}"))?;
        }
        mount_rootfs(c).map_err(|e| format!("CannotStartContainerError: root filesystem: {e}"))?;
        make_workdir(c).map_err(|e| format!("CannotStartContainerError: workingDirectory: {e}"))?;
        self.step("rootfs", t);
        let t = Instant::now();
        let log = logs::LogFile::open(&c.log, self.plan.log_max_bytes)
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
        if c.loopback_up {
            if let Err(e) = loopback_up(&container) {
                let _ = container.delete(true);
                return Err(format!("CannotStartContainerError: {e}"));
            }
        }
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
        self.logs.push(log);
        for (fd, is_err) in [(out_r, false), (err_r, true)] {
            let _ = nix::fcntl::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
            );
            self.pumps.push((logs::Pump::new(fd, &c.name, is_err), idx));
        }
        self.watch_health(c);
        self.running.push(Running {
            plan: c.clone(),
            container,
            pid,
            log: idx,
            kill_at: None,
        });
        Ok(())
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

/// Docker makes a missing working directory (an image without `/tmp`, say); so does berth,
/// in the container's own upper layer, never through a symbolic link of the image's.
fn make_workdir(c: &ContainerPlan) -> Result<(), String> {
    // An image's WorkingDir is the image author's word: `..` would climb out of the rootfs.
    if !crate::spec::is_inside_path(&c.cwd) {
        return Err(format!(
            "working directory {:?} is not an absolute path inside the container",
            c.cwd
        ));
    }
    let mut dir = c.rootfs.clone();
    for part in std::path::Path::new(&c.cwd).components().skip(1) {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => return Ok(()), // the runtime resolves it inside
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?,
        }
    }
    Ok(())
}

pub(super) fn unmount(c: &ContainerPlan) {
    let _ = umount2(&c.rootfs, MntFlags::MNT_DETACH);
}

/// `lo` up in the namespace the created (not yet started) container's init holds.
fn loopback_up(container: &libcontainer::container::Container) -> Result<(), String> {
    let pid = container
        .pid()
        .ok_or_else(|| "no init process to set lo up for".to_string())?;
    let ns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    crate::network::netns::loopback_up(&ns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rootfs: &std::path::Path, cwd: &str) -> ContainerPlan {
        serde_json::from_value(serde_json::json!({
            "name": "c", "containerId": "c0", "essential": true, "stopTimeoutSecs": 1,
            "bundle": "/b", "lower": [], "upper": "/u", "work": "/w",
            "rootfs": rootfs, "cgroup": "/g", "log": "/l", "cwd": cwd,
        }))
        .expect("a plan")
    }

    #[test]
    fn an_images_working_directory_that_climbs_is_refused_and_makes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        for cwd in ["/../../escaped", "relative/dir", "/app/../../escaped"] {
            let e = make_workdir(&plan(&rootfs, cwd)).unwrap_err();
            assert!(
                e.contains("is not an absolute path inside the container"),
                "{e}"
            );
        }
        assert!(!d.path().join("escaped").exists());
        make_workdir(&plan(&rootfs, "/srv/app")).unwrap();
        assert!(rootfs.join("srv/app").is_dir());
    }
}
