//! The shim's start gate: a pipe from berthd that says when the shim may begin (systemd has
//! put it in its task's scope) or why it must not. The shim touches no cgroup before it opens:
//! moving itself into its leaf before systemd moved it into the scope would place it wrongly.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;

/// The variable naming the gate's descriptor in the shim's environment.
pub const GATE_ENV: &str = "BERTH_SHIM_GATE";
/// The descriptor the gate's read end has in the shim.
pub const GATE_FD: RawFd = 3;
const OPEN: &[u8] = b"ok";

/// A new gate: (read end for the shim, write end for berthd), both close-on-exec.
pub fn new() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Puts `read` at [`GATE_FD`] without close-on-exec. Runs in the forked child before exec, so
/// it makes only async-signal-safe calls.
pub fn install(read: RawFd) -> std::io::Result<()> {
    if read == GATE_FD {
        // SAFETY: fcntl on a descriptor this process owns.
        let r = unsafe { libc::fcntl(read, libc::F_SETFD, 0) };
        return if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        };
    }
    // SAFETY: dup2 onto a fixed number; the new descriptor has no close-on-exec.
    if unsafe { libc::dup2(read, GATE_FD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// berthd's side: opens the gate, or tells the shim why it stays shut.
pub fn release(write: OwnedFd, outcome: Result<(), String>) {
    let mut f = std::fs::File::from(write);
    let word = match outcome {
        Ok(()) => OPEN.to_vec(),
        Err(reason) => reason.into_bytes(),
    };
    // A shim that is already gone cannot be told anything.
    let _ = f.write_all(&word);
}

/// The shim's side: waits for berthd's word. Without a gate in the environment (a shim
/// started by hand) there is nothing to wait for.
pub fn wait() -> Result<(), String> {
    let Some(fd) = std::env::var(GATE_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return Ok(());
    };
    // SAFETY: berthd put the gate at this descriptor for this process alone.
    let gate = unsafe { OwnedFd::from_raw_fd(fd) };
    read_word(gate)
}

fn read_word(gate: OwnedFd) -> Result<(), String> {
    let raw = gate.as_raw_fd();
    let mut word = Vec::new();
    std::fs::File::from(gate)
        .read_to_end(&mut word)
        .map_err(|e| format!("cannot read berthd's start gate (fd {raw}): {e}"))?;
    match word.as_slice() {
        OPEN => Ok(()),
        [] => Err("berthd stopped before the task's scope was ready".into()),
        reason => Err(String::from_utf8_lossy(reason).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_lets_the_shim_begin() {
        let (r, w) = new().expect("pipe");
        release(w, Ok(()));
        assert_eq!(read_word(r), Ok(()));
    }

    #[test]
    fn a_shut_gate_carries_the_reason() {
        let (r, w) = new().expect("pipe");
        release(
            w,
            Err("systemd refused the scope berth-x.scope: boom".into()),
        );
        assert_eq!(
            read_word(r),
            Err("systemd refused the scope berth-x.scope: boom".into())
        );
    }

    #[test]
    fn a_gate_closed_without_a_word_means_berthd_went_away() {
        let (r, w) = new().expect("pipe");
        drop(w);
        assert_eq!(
            read_word(r),
            Err("berthd stopped before the task's scope was ready".into())
        );
    }
}
