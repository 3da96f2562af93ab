//! One running microVM seen from the host: the VMM process, started from a [`Vmm`]'s command
//! line, and the agent's channel once the agent has said hello. Boot and power-off each have a
//! deadline; past it, or when the VMM dies, the error names the VMM and ends with the guest's
//! last console lines.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::jail;
use super::protocol::{self, AgentMessage, HostMessage, ProtocolError};
use super::vmm::{VmSpec, Vmm};

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot start {vmm}: {source}")]
    Spawn {
        vmm: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{vmm} exited ({status}) before its agent answered{console}")]
    Exited {
        vmm: String,
        status: ExitStatus,
        console: String,
    },
    #[error("{vmm}: the agent did not answer within {secs}s{console}")]
    Timeout {
        vmm: String,
        secs: u64,
        console: String,
    },
    #[error("{vmm}: {source}")]
    Jail {
        vmm: String,
        #[source]
        source: jail::JailError,
    },
    #[error("{vmm}: stopped before its agent answered")]
    Stopped { vmm: String },
    #[error("{vmm}: the agent took no message for {secs}s")]
    NotReading { vmm: String, secs: u64 },
    #[error("{vmm}: {source}{console}")]
    Agent {
        vmm: String,
        #[source]
        source: ProtocolError,
        console: String,
    },
}

pub struct Machine {
    vmm: String,
    child: Child,
    /// The agent's channel, once connected.
    chan: Option<UnixStream>,
    console_log: std::path::PathBuf,
}

/// How long a send may wait for the guest to take it: a guest that stops reading its port must
/// not hold the shim (a send that timed out leaves the stream cut mid-frame: the VM is lost).
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of the console is read for an error's tail.
const CONSOLE_TAIL_BYTES: u64 = 64 << 10;

/// The last `n` lines of the guest's console, as an error's tail. Only its end is read: the
/// guest writes the file and may have made it large.
fn console_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(CONSOLE_TAIL_BYTES)));
        let _ = f.take(CONSOLE_TAIL_BYTES).read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = lines[lines.len().saturating_sub(n)..].join("\n  ");
    format!("; guest console ({}):\n  {tail}", path.display())
}

/// Starts the VMM and waits for the agent's hello. `stop` is asked every 250 ms: once it says
/// yes the VMM is killed and the boot ends with [`MachineError::Stopped`] (a task stopped
/// while its VM boots waits for nothing).
pub fn boot(
    vmm: &dyn Vmm,
    vm: &VmSpec,
    timeout: Duration,
    stop: &mut dyn FnMut() -> bool,
) -> Result<(Machine, AgentMessage), MachineError> {
    let name = vmm.name().to_string();
    let child = spawn(&name, vmm, vm)?;
    let mut m = Machine {
        vmm: name,
        child,
        chan: None,
        console_log: vm.console_log.clone(),
    };
    let deadline = Instant::now() + timeout;
    let mut chan = m.connect(&vm.agent_socket, deadline, timeout, stop)?;
    let hello = HostMessage::Hello {
        version: protocol::VERSION,
    };
    protocol::write_frame(&mut chan, &hello).map_err(|e| m.agent_error(e, timeout))?;
    m.await_answer(&chan, deadline, timeout, stop)?;
    let hello = protocol::read_frame_limited(
        &mut Deadline {
            chan: &mut chan,
            until: deadline,
        },
        protocol::MAX_AGENT_FRAME,
    )
    .and_then(protocol::hello_of)
    .map_err(|e| m.agent_error(e, timeout))?;
    let _ = chan.set_read_timeout(None);
    let _ = chan.set_write_timeout(Some(SEND_TIMEOUT));
    m.chan = Some(chan);
    Ok((m, hello))
}

/// Starts the VMM in its cgroup and, with a [`VmSpec::run_as`], as that user with what it
/// needs handed over.
fn spawn(name: &str, vmm: &dyn Vmm, vm: &VmSpec) -> Result<Child, MachineError> {
    let spawn_err = |source| MachineError::Spawn {
        vmm: name.to_string(),
        source,
    };
    let handed = match &vm.run_as {
        Some(who) => Some(jail::hand(vm, who).map_err(|e| MachineError::Jail {
            vmm: name.to_string(),
            source: e,
        })?),
        None => {
            let _ = std::fs::remove_file(&vm.agent_socket);
            None
        }
    };
    let argv = vmm.command(handed.as_ref().map_or(vm, |h| &h.spec));
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Opened here, written in the child: the VMM is in its cgroup before it runs at all.
    let procs = match &vm.cgroup {
        Some(dir) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .map_err(spawn_err)?,
        ),
        None => None,
    };
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    let handed_fds = handed.as_ref().map(|h| h.raw_fds()).unwrap_or_default();
    let who = vm.run_as.clone();
    // SAFETY: write(2) on an open descriptor and jail::enter's calls are async-signal-safe;
    // the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = procs_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            match &who {
                Some(w) => jail::enter(&handed_fds, w),
                None => Ok(()),
            }
        })
    };
    // The descriptors handed over close here, once the VMM holds its own.
    command.spawn().map_err(spawn_err)
}

impl Machine {
    fn connect(
        &mut self,
        socket: &Path,
        deadline: Instant,
        timeout: Duration,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<UnixStream, MachineError> {
        loop {
            if let Ok(s) = UnixStream::connect(socket) {
                return Ok(s);
            }
            self.check_alive()?;
            self.check_stop(stop)?;
            if Instant::now() >= deadline {
                return Err(self.timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the VMM when `stop` says so.
    fn check_stop(&mut self, stop: &mut dyn FnMut() -> bool) -> Result<(), MachineError> {
        if !stop() {
            return Ok(());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(MachineError::Stopped {
            vmm: self.vmm.clone(),
        })
    }

    /// Waits until the agent has something to say, the VMM dies, `stop` says so, or the
    /// deadline passes.
    fn await_answer(
        &mut self,
        chan: &UnixStream,
        deadline: Instant,
        timeout: Duration,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<(), MachineError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(250u16));
            if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                return Ok(());
            }
            self.check_alive()?;
            self.check_stop(stop)?;
            if Instant::now() >= deadline {
                return Err(self.timeout(timeout));
            }
        }
    }

    fn check_alive(&mut self) -> Result<(), MachineError> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
                }
                let mut console = console_tail(&self.console_log, 15);
                if !stderr.trim().is_empty() {
                    console = format!("; {}{console}", stderr.trim());
                }
                Err(MachineError::Exited {
                    vmm: self.vmm.clone(),
                    status,
                    console,
                })
            }
            _ => Ok(()),
        }
    }

    fn timeout(&mut self, timeout: Duration) -> MachineError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        MachineError::Timeout {
            vmm: self.vmm.clone(),
            secs: timeout.as_secs(),
            console: console_tail(&self.console_log, 15),
        }
    }

    fn agent_error(&mut self, e: ProtocolError, timeout: Duration) -> MachineError {
        // A dying VMM closes (or resets) the channel a moment before it can be reaped: give it
        // that moment, so its end is reported as such.
        if !matches!(&e, ProtocolError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
        {
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Err(exited) = self.check_alive() {
                    return exited;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Err(exited) = self.check_alive() {
            return exited;
        }
        match e {
            ProtocolError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                self.timeout(timeout)
            }
            source => MachineError::Agent {
                vmm: self.vmm.clone(),
                source,
                console: console_tail(&self.console_log, 15),
            },
        }
    }

    /// Sends the agent a message.
    pub fn send(&mut self, msg: &HostMessage) -> Result<(), MachineError> {
        let sent = match self.chan.as_mut() {
            Some(chan) => protocol::write_frame(chan, msg),
            None => Err(ProtocolError::Closed),
        };
        sent.map_err(|e| match e {
            ProtocolError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                MachineError::NotReading {
                    vmm: self.vmm.clone(),
                    secs: SEND_TIMEOUT.as_secs(),
                }
            }
            e => self.agent_error(e, Duration::ZERO),
        })
    }

    /// The agent's next message, whole within `timeout`: a guest that sends a frame a byte
    /// at a time gets `timeout` for all of it, not for each byte.
    pub fn receive(&mut self, timeout: Duration) -> Result<AgentMessage, MachineError> {
        let got = match self.chan.as_mut() {
            Some(chan) => {
                let mut r = Deadline {
                    chan,
                    until: Instant::now() + timeout,
                };
                protocol::read_frame_limited(&mut r, protocol::MAX_AGENT_FRAME)
            }
            None => Err(ProtocolError::Closed),
        };
        got.map_err(|e| self.agent_error(e, timeout))
    }

    /// Empties the console log once it is past `max` bytes: the guest writes it, and must not
    /// fill the host's disk with it. (QEMU appends to it, so it goes on at the new end.)
    pub fn bound_console(&self, max: u64) {
        let big = std::fs::metadata(&self.console_log).is_ok_and(|m| m.len() > max);
        if big {
            if let Ok(f) = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.console_log)
            {
                let _ = f.set_len(0);
            }
        }
    }

    /// The agent's channel, to poll beside other descriptors.
    pub fn channel(&self) -> Option<BorrowedFd<'_>> {
        self.chan.as_ref().map(|c| c.as_fd())
    }

    /// The VMM's exit status once it has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The guest console's last lines, for a reason.
    pub fn console(&self) -> String {
        console_tail(&self.console_log, 10)
    }

    /// The VMM's process id, for its cgroup and for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the agent to power the VM off and waits for the VMM to exit; kills it past
    /// `timeout`.
    pub fn power_off(mut self, timeout: Duration) -> Result<ExitStatus, MachineError> {
        if let Err(e) = self.send(&HostMessage::PowerOff) {
            let _ = self.child.kill();
            return Err(e);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads from the channel until a deadline, whatever the number of reads it takes.
struct Deadline<'a> {
    chan: &'a mut UnixStream,
    until: Instant,
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.chan.set_read_timeout(Some(left))?;
        std::io::Read::read(self.chan, buf)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_frame_trickled_a_byte_at_a_time_gets_one_deadline_for_all_of_it() {
        let (mut guest, mut host) = UnixStream::pair().expect("pair");
        let writer = std::thread::spawn(move || {
            // A length of 8 and then a byte every 100 ms: each read returns in time, the
            // frame never does.
            let _ = guest.write_all(&8u32.to_be_bytes());
            for b in b"{\"Pong\":" {
                std::thread::sleep(Duration::from_millis(100));
                if guest.write_all(&[*b]).is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let mut r = Deadline {
            chan: &mut host,
            until: Instant::now() + Duration::from_millis(350),
        };
        let got =
            protocol::read_frame_limited::<_, AgentMessage>(&mut r, protocol::MAX_AGENT_FRAME);
        assert!(got.is_err(), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "the deadline held for {:?}",
            started.elapsed()
        );
        drop(host);
        let _ = writer.join();
    }

    #[test]
    fn an_agent_frame_past_its_bound_is_refused_before_it_is_read() {
        let (mut guest, mut host) = UnixStream::pair().expect("pair");
        guest
            .write_all(&(protocol::MAX_AGENT_FRAME + 1).to_be_bytes())
            .expect("write");
        let got =
            protocol::read_frame_limited::<_, AgentMessage>(&mut host, protocol::MAX_AGENT_FRAME);
        assert!(
            matches!(got, Err(ProtocolError::TooLarge(n)) if n == protocol::MAX_AGENT_FRAME + 1),
            "{got:?}"
        );
    }
}
