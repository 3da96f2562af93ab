//! berth's agent as PID 1 in a microVM: mounts what a Linux system needs, loads the kernel
//! modules its initramfs carries (in the order `/modules/order` gives), finds its virtio-serial
//! port by name, and answers the host over the versioned protocol until told to power off.
//! Whatever goes wrong, it says so on the console and powers the VM off: a PID 1 that returned
//! would panic the kernel.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::os::fd::AsFd;

use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::guest::{self, Containers};
use super::output::Chunk;
use super::probes::CheckRequest;
use super::protocol::{self, AgentMessage, HostMessage, ProtocolError, VmContainer};
use super::vmm::AGENT_PORT;
use crate::runtime::exec::ExecAs;

/// Where the initramfs keeps the modules and their load order.
pub const MODULES_DIR: &str = "/modules";
/// How long the agent waits for its port to appear once the drivers are loaded.
const PORT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("mount {target}: {source}")]
    Mount {
        target: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("load module {module}: {source}")]
    Module {
        module: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no virtio-serial port named {AGENT_PORT} within {}s (is virtio_console loaded?)", PORT_WAIT.as_secs())]
    NoPort,
    #[error("open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroups: {0}")]
    Cgroups(String),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// The agent's whole life; never returns.
pub fn run() -> ! {
    if let Err(e) = serve() {
        eprintln!("berth-agent: {e}");
    }
    power_off()
}

fn serve() -> Result<(), AgentError> {
    mount_basics()?;
    let modules = load_modules(Path::new(MODULES_DIR))?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    guest::setup_cgroups().map_err(AgentError::Cgroups)?;
    let port = find_port(Path::new("/sys/class/virtio-ports"), PORT_WAIT)?;
    let mut chan = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&port)
        .map_err(|source| AgentError::Open {
            path: port.clone(),
            source,
        })?;
    let mut containers = Containers::default();
    loop {
        // Output and exits are news whatever the host is doing; a container's last words go
        // before its exit.
        for chunk in containers.output(None) {
            say_output(&mut chan, chunk)?;
        }
        let reaped = containers.reap();
        for e in reaped.containers {
            trace(&format!("{} exited {} (oom {})", e.name, e.code, e.oom));
            for chunk in containers.output(Some(&e.name)) {
                say_output(&mut chan, chunk)?;
            }
            let said = AgentMessage::Exited {
                name: e.name,
                code: e.code,
                oom: e.oom,
            };
            protocol::write_frame(&mut chan, &said)?;
        }
        for (name, failure) in reaped.checks {
            if let Some(why) = &failure {
                trace(&format!("check of {name} failed: {why}"));
            }
            protocol::write_frame(&mut chan, &AgentMessage::Checked { name, failure })?;
        }
        containers.kill_overdue(Some(Instant::now()));
        if !readable(&chan, &containers) {
            continue;
        }
        match protocol::read_frame::<_, HostMessage>(&mut chan) {
            Ok(HostMessage::Hello { version }) => {
                let hello = AgentMessage::Hello {
                    version: protocol::VERSION,
                    kernel: kernel.clone(),
                    modules: modules.clone(),
                };
                protocol::answer(&mut chan, version, hello)?;
            }
            Ok(HostMessage::Run { containers: wanted }) => {
                start_all(&mut chan, &mut containers, &wanted)?
            }
            Ok(HostMessage::Stop) => {
                trace("stop");
                containers.stop_all()
            }
            Ok(HostMessage::Check {
                name,
                command,
                uid,
                gid,
                cwd,
                timeout_secs,
            }) => {
                let request = CheckRequest {
                    name: &name,
                    command: &command,
                    who: ExecAs {
                        uid,
                        gid,
                        cwd: &cwd,
                    },
                    timeout_secs,
                };
                if let Err(why) = containers.check(&request) {
                    let failure = Some(why);
                    protocol::write_frame(&mut chan, &AgentMessage::Checked { name, failure })?;
                }
            }
            Ok(HostMessage::Ping { seq }) => {
                let usage = containers.usage();
                protocol::write_frame(&mut chan, &AgentMessage::Pong { seq, usage })?;
            }
            Ok(HostMessage::PowerOff) => {
                containers.kill_overdue(None);
                protocol::write_frame(&mut chan, &AgentMessage::PoweringOff)?;
                return Ok(());
            }
            // The host has not connected yet, or went away: a virtio port then reads as
            // end-of-file. Wait for it to (re)connect.
            Err(ProtocolError::Closed) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether the host has sent something, waiting up to 100 ms or until a container writes.
/// A port the host is not connected to polls as hung up: then wait a little, not spin.
fn readable(chan: &File, containers: &Containers) -> bool {
    let mut fds = vec![PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
    fds.extend(
        containers
            .output_fds()
            .into_iter()
            .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
    );
    let _ = poll(&mut fds, PollTimeout::from(100u16));
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if revents.contains(PollFlags::POLLIN) {
        return true;
    }
    if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn say_output(chan: &mut File, chunk: Chunk) -> Result<(), AgentError> {
    let said = AgentMessage::Output {
        name: chunk.name,
        stderr: chunk.stderr,
        data: chunk.data,
    };
    Ok(protocol::write_frame(chan, &said)?)
}

/// Starts the containers in order, saying of each whether it runs.
fn start_all(
    chan: &mut File,
    containers: &mut Containers,
    wanted: &[VmContainer],
) -> Result<(), AgentError> {
    for c in wanted {
        trace(&format!("creating {}", c.name));
        let said = match containers.start(c) {
            Ok(pid) => AgentMessage::Started {
                name: c.name.clone(),
                pid,
            },
            Err(reason) => AgentMessage::Failed {
                name: c.name.clone(),
                reason,
            },
        };
        if let AgentMessage::Failed { reason, .. } = &said {
            trace(&format!("{} failed: {reason}", c.name));
        } else {
            trace(&format!("{} started", c.name));
        }
        protocol::write_frame(chan, &said)?;
    }
    Ok(())
}

/// A line on the console (the task's `console.log` on the host) for each step the agent
/// takes, with the guest's uptime: what a VM was doing when it went wrong is otherwise unseen
/// (the kernel's own lines come at `loglevel=4`).
fn trace(what: &str) {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs = uptime.split_whitespace().next().unwrap_or("?");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let avail = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .unwrap_or("");
    eprintln!("[{secs:>9}] berth-agent: {what} ({avail})");
}

fn mount_basics() -> Result<(), AgentError> {
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let table: [(&'static str, &str, MsFlags, Option<&str>); 4] = [
        ("/proc", "proc", quiet, None),
        ("/sys", "sysfs", quiet, None),
        ("/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
    ];
    for (target, fstype, flags, data) in table {
        let _ = std::fs::create_dir_all(target);
        mount(Some(fstype), target, Some(fstype), flags, data)
            .map_err(|source| AgentError::Mount { target, source })?;
    }
    Ok(())
}

/// Loads `dir/NAME.ko` for each NAME in `dir/order`; returns the names loaded.
fn load_modules(dir: &Path) -> Result<Vec<String>, AgentError> {
    let order = std::fs::read_to_string(dir.join("order")).unwrap_or_default();
    let mut loaded = Vec::new();
    for name in order.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fail = |source| AgentError::Module {
            module: name.to_string(),
            source,
        };
        let file = File::open(dir.join(format!("{name}.ko"))).map_err(fail)?;
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::Error::EEXIST) => loaded.push(name.to_string()),
            Err(e) => return Err(fail(e.into())),
        }
    }
    Ok(loaded)
}

/// The device of the virtio-serial port named [`AGENT_PORT`], once the driver has made it.
fn find_port(class: &Path, wait: Duration) -> Result<PathBuf, AgentError> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(dev) = port_named(class, AGENT_PORT) {
            if dev.exists() {
                return Ok(dev);
            }
        }
        if Instant::now() >= deadline {
            return Err(AgentError::NoPort);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/dev/vportNpM` for the port whose sysfs `name` is `name`.
fn port_named(class: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(class).ok()?.flatten().find_map(|e| {
        let n = std::fs::read_to_string(e.path().join("name")).ok()?;
        (n.trim() == name).then(|| Path::new("/dev").join(e.file_name()))
    })
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Only reached when reboot(2) failed: exiting panics the kernel, and `panic=-1` with
    // QEMU's -no-reboot ends the VM all the same.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_port_is_found_by_its_sysfs_name() {
        let d = tempfile::tempdir().unwrap();
        for (dev, name) in [("vport0p0", "other"), ("vport0p1", AGENT_PORT)] {
            std::fs::create_dir_all(d.path().join(dev)).unwrap();
            std::fs::write(d.path().join(dev).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            port_named(d.path(), AGENT_PORT),
            Some(PathBuf::from("/dev/vport0p1"))
        );
        assert_eq!(port_named(d.path(), "absent"), None);
    }
}
