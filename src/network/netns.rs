//! Named network namespaces: a namespace kept alive by a bind mount on a file under berth's
//! runtime directory (as `ip netns` does under /run/netns), so it outlives berthd's restarts
//! and any one container, and containers join it by path.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot {action} network namespace {path}: {source}")]
    Sys {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn sys<'a, E: Into<std::io::Error>>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(E) -> NetnsError + 'a {
    move |e| NetnsError::Sys {
        action,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// A new network namespace held at `path`. A thread of its own unshares, so berthd's
/// threads stay in the host's namespace.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sys("create the directory of", path))?;
    }
    std::fs::File::create(path).map_err(sys("create the file of", path))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetnsError> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(sys("create", path))?;
            mount(
                Some("/proc/thread-self/ns/net"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys("bind-mount", path))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Sys {
                action: "create",
                path: path.to_owned(),
                source: std::io::Error::other("the thread making it panicked"),
            })
        })
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Enters the namespace at `path` on the calling thread (meant for a thread of its own).
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let f = std::fs::File::open(path).map_err(sys("open", path))?;
    setns(f, CloneFlags::CLONE_NEWNET).map_err(sys("enter", path))
}

/// Sets `lo` up in the namespace at `path` (a container's `/proc/PID/ns/net`), as Docker
/// does for a container with a namespace of its own and no interface (`networkMode` none,
/// `disableNetworking`): 127.0.0.1 then answers inside it. A thread of its own enters it.
pub fn loopback_up(path: &Path) -> Result<(), NetnsError> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), NetnsError> {
            enter(path)?;
            set_up("lo").map_err(sys("set lo up in", path))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Sys {
                action: "set lo up in",
                path: path.to_owned(),
                source: std::io::Error::other("the thread doing it panicked"),
            })
        })
    })
}

/// `ip link set NAME up` in the calling thread's namespace, by the ioctls on a datagram
/// socket (no netlink runtime for one flag).
fn set_up(name: &str) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into `req`, which lives
    // across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union's flags member is the one SIOCGIFFLAGS wrote.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which lives across the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the namespace go: once no process is in it, the kernel frees it with its links (a
/// veth's pair goes with it).
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(sys("unmount", path)(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(sys("remove", path)(e)),
        _ => Ok(()),
    }
}

/// The namespaces under `dir`, by file name.
pub fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
