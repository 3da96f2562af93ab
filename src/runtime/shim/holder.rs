//! The holder of a task's shared namespaces (`pidMode`/`ipcMode` task): a process the shim
//! clones into new pid and ipc namespaces, which the containers join, as a pod's pause process
//! does. It is PID 1 of the shared pid namespace, so no container's exit takes the others'
//! namespace with it, and it reaps what is orphaned there.

use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// Clones the holder with the namespaces named (`pid`, `ipc`).
pub fn spawn(kinds: &[String]) -> nix::Result<Pid> {
    let mut flags = CloneFlags::empty();
    for k in kinds {
        match k.as_str() {
            "pid" => flags |= CloneFlags::CLONE_NEWPID,
            "ipc" => flags |= CloneFlags::CLONE_NEWIPC,
            _ => {}
        }
    }
    let mut stack = vec![0u8; 64 * 1024];
    // SAFETY: the shim is single-threaded, and the child only resets signal dispositions and
    // loops over sigwait/waitpid, touching nothing the parent shares.
    unsafe { nix::sched::clone(Box::new(hold), &mut stack, flags, Some(libc::SIGCHLD)) }
}

fn hold() -> isize {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        // SAFETY: restoring the default disposition; the shim's handlers would write into
        // the shim's own pipe.
        let _ = unsafe { sigaction(sig, &default) };
    }
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let _ = chld.thread_block();
    loop {
        let _ = chld.wait();
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}

pub fn stop(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
}

/// Points the container's `kinds` namespaces in its `config.json` at the holder's.
pub fn join(bundle: &Path, holder: Pid, kinds: &[String]) -> Result<(), String> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some(list) = config["linux"]["namespaces"].as_array_mut() else {
        return Err(format!("{}: no linux.namespaces", path.display()));
    };
    list.retain(|n| !kinds.iter().any(|k| n["type"] == k.as_str()));
    for k in kinds {
        list.push(json!({"type": k, "path": format!("/proc/{holder}/ns/{k}")}));
    }
    let bytes = serde_json::to_vec(&config).map_err(|e| e.to_string())?;
    crate::fsutil::write_atomic(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_join_the_holders_namespaces_in_their_config() {
        let d = tempfile::tempdir().unwrap();
        let config = json!({"linux": {"namespaces": [
            {"type": "mount"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}]}});
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        join(d.path(), Pid::from_raw(77), &["pid".into(), "ipc".into()]).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{"type": "mount"}, {"type": "uts"},
                   {"type": "pid", "path": "/proc/77/ns/pid"},
                   {"type": "ipc", "path": "/proc/77/ns/ipc"}])
        );
    }
}
