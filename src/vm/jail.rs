//! The VMM as an unprivileged user, as Firecracker's jailer runs it: the guest runs the task's
//! code, and a guest that breaks into its VMM should find a process that owns nothing. The
//! shim opens, as root, what the VMM needs (kernel, initramfs, layer disks, the console, the
//! agent's listening socket) and hands each over as an inherited descriptor the VMM reaches as
//! `/proc/self/fd/N`; the child drops to the user between fork and exec. The VMM's user can
//! then reach nothing of berth's state but what it was handed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::vmm::VmSpec;

/// Who the VMM runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: `kvm` where it exists, for `/dev/kvm`.
    pub groups: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("cannot open {path} for the VMM: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} is not readable by {user}, who runs the VMM (mode {mode:o}, owner uid {owner}): \
         make it readable (chmod o+r) or set vmm_user in berthd's config"
    )]
    Unreadable {
        path: PathBuf,
        user: String,
        mode: u32,
        owner: u32,
    },
    #[error("cannot listen on the agent's socket {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The user for `vmm_user`: `None` for root (the VMM keeps root's privileges), else the
/// account with its `kvm` group; an error names the missing account and the fix.
pub fn resolve(name: &str) -> Result<Option<RunAs>, String> {
    if name == "root" {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("vmm_user {name}: cannot look it up: {e}"))?
        .ok_or_else(|| {
            format!(
                "vmm_user {name}: no such user: create it (systemd-sysusers with berth's \
                 berth.sysusers.conf does) or set vmm_user in berthd's config"
            )
        })?;
    if user.uid.is_root() {
        return Ok(None);
    }
    let kvm = nix::unistd::Group::from_name("kvm").ok().flatten();
    Ok(Some(RunAs {
        user: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: kvm.map(|g| g.gid.as_raw()).into_iter().collect(),
    }))
}

/// Whether a file of this mode and owner is readable by `who` (the VMM reopens what it was
/// handed through `/proc/self/fd`, and that reopening checks the file's own permissions).
pub fn readable_by(mode: u32, owner: u32, group: u32, who: &RunAs) -> bool {
    let in_group = group == who.gid || who.groups.contains(&group);
    mode & 0o004 != 0 || (owner == who.uid && mode & 0o400 != 0) || (in_group && mode & 0o040 != 0)
}

/// What the VMM is handed: a spec naming the descriptors instead of the paths, and the
/// descriptors themselves, open until the VMM has started.
pub struct Handed {
    pub spec: VmSpec,
    fds: Vec<OwnedFd>,
}

impl Handed {
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.fds.iter().map(|f| f.as_raw_fd()).collect()
    }
}

fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens what the VM needs for `who` and names it by descriptor in the returned spec.
pub fn hand(vm: &VmSpec, who: &RunAs) -> Result<Handed, JailError> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut spec = vm.clone();
    let read = |path: &Path, fds: &mut Vec<OwnedFd>| -> Result<PathBuf, JailError> {
        let f = File::open(path).map_err(|source| JailError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let m = f.metadata().map_err(|source| JailError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if !readable_by(m.mode(), m.uid(), m.gid(), who) {
            return Err(JailError::Unreadable {
                path: path.to_path_buf(),
                user: who.user.clone(),
                mode: m.mode() & 0o7777,
                owner: m.uid(),
            });
        }
        let named = fd_path(&f);
        fds.push(f.into());
        Ok(named)
    };
    spec.kernel = read(&vm.kernel, &mut fds)?;
    spec.initramfs = read(&vm.initramfs, &mut fds)?;
    for d in &mut spec.disks {
        d.path = read(&d.path, &mut fds)?;
    }
    spec.console_log = hand_console(&vm.console_log, who, &mut fds)?;
    let _ = std::fs::remove_file(&vm.agent_socket);
    let listener = UnixListener::bind(&vm.agent_socket).map_err(|source| JailError::Listen {
        path: vm.agent_socket.clone(),
        source,
    })?;
    spec.agent_fd = Some(listener.as_raw_fd());
    fds.push(listener.into());
    spec.run_as = None;
    Ok(Handed { spec, fds })
}

/// The console, owned by the VMM's user so it may reopen it for appending; the shim, root,
/// still reads and empties it by its path.
fn hand_console(path: &Path, who: &RunAs, fds: &mut Vec<OwnedFd>) -> Result<PathBuf, JailError> {
    let err = |source| JailError::Open {
        path: path.to_path_buf(),
        source,
    };
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    std::os::unix::fs::fchown(&f, Some(who.uid), Some(who.gid)).map_err(err)?;
    let named = fd_path(&f);
    fds.push(f.into());
    Ok(named)
}

/// In the VMM's child between fork and exec: keeps the handed descriptors open across exec
/// and drops to `who` (groups first: after setuid nothing may change them). Only
/// async-signal-safe calls, as a forked child of a threaded process must.
///
/// # Safety
/// Call only in a `pre_exec` closure.
pub unsafe fn enter(fds: &[RawFd], who: &RunAs) -> io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    for fd in fds {
        check(libc::fcntl(*fd, libc::F_SETFD, 0))?;
    }
    check(libc::setgroups(who.groups.len(), who.groups.as_ptr()))?;
    check(libc::setgid(who.gid))?;
    check(libc::setuid(who.uid))?;
    check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmm_user() -> RunAs {
        RunAs {
            user: "berth-vmm".into(),
            uid: 990,
            gid: 990,
            groups: vec![108],
        }
    }

    #[test]
    fn a_file_is_readable_by_others_by_its_owner_or_by_its_group() {
        let w = vmm_user();
        assert!(readable_by(0o100644, 0, 0, &w), "world-readable");
        assert!(
            !readable_by(0o100600, 0, 0, &w),
            "root's own, as Ubuntu's vmlinuz"
        );
        assert!(readable_by(0o100600, 990, 0, &w), "the user's own");
        assert!(
            !readable_by(0o100200, 990, 0, &w),
            "the user's own, write-only"
        );
        assert!(readable_by(0o100640, 0, 108, &w), "the kvm group's");
        assert!(readable_by(0o100640, 0, 990, &w), "the user's group's");
        assert!(!readable_by(0o100640, 0, 5, &w), "another group's");
    }

    #[test]
    fn root_keeps_the_vmm_as_root_and_a_missing_user_is_named_with_the_fix() {
        assert_eq!(resolve("root"), Ok(None));
        let e = resolve("berth-no-such-user").unwrap_err();
        assert!(
            e.contains("vmm_user berth-no-such-user: no such user"),
            "{e}"
        );
        assert!(e.contains("systemd-sysusers"), "{e}");
    }
}
