//! Clearing what a task left on the host when its shim could not: processes still in its
//! cgroup, overlay mounts, libcontainer's state, and shims of tasks berth no longer runs. Used
//! when a stopped task is released, and once at start, when berthd sweeps for orphans.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use nix::unistd::Pid;

use crate::cgroup::CgroupTree;

/// A running `berthd shim TASK_DIR` process and the task it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShimProcess {
    pub pid: Pid,
    pub task_id: String,
}

/// The task directory of a shim's command line, NUL-separated: `berth-shim TASK_DIR`,
/// `berthd shim TASK_DIR`, or
/// `systemd-run --scope ... -- berthd shim TASK_DIR`, as berths before StartTransientUnit
/// launched it (a shim of theirs may still be starting when berthd is upgraded).
pub(super) fn shim_task_dir(cmdline: &[u8]) -> Option<PathBuf> {
    let args: Vec<&[u8]> = cmdline
        .strip_suffix(b"\0")
        .unwrap_or(cmdline)
        .split(|b| *b == 0)
        .collect();
    match args.as_slice() {
        [_, .., b"shim", dir] if !dir.is_empty() => Some(PathBuf::from(OsStr::from_bytes(dir))),
        [exe, dir] if exe.ends_with(b"berth-shim") && !dir.is_empty() => {
            Some(PathBuf::from(OsStr::from_bytes(dir)))
        }
        _ => None,
    }
}

/// The task a shim command line runs, when it names a task directory right under
/// `tasks_dir` by a task id.
pub(super) fn shim_task(cmdline: &[u8], tasks_dir: &Path) -> Option<String> {
    let dir = shim_task_dir(cmdline)?;
    if dir.parent()? != tasks_dir {
        return None;
    }
    let id = dir.file_name()?.to_str()?;
    crate::names::is_task_id(id).then(|| id.to_string())
}

/// The processes of cgroup `dir` (absolute).
fn procs(dir: &Path) -> Vec<Pid> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<i32>().ok())
        .map(Pid::from_raw)
        .collect()
}

fn cmdline(pid: Pid) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// berthd's own cgroup, absolute: a shim it started sits there until systemd moves it into
/// its scope, and stays there when berthd died in between.
fn own_cgroup(tree: &CgroupTree) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(tree.mount().join(rel.trim_start_matches('/')))
}

/// The shims of task `only` (or of every task), found only where root alone can put a
/// process: the root and `shim` leaf of each task's scope, and berthd's own service cgroup.
/// A process anywhere else whose command line imitates a shim is not one, and the task id
/// comes from the scope's name or is checked to be one.
pub(super) fn shims(tree: &CgroupTree, tasks_dir: &Path, only: Option<&str>) -> Vec<ShimProcess> {
    let mut found: Vec<ShimProcess> = Vec::new();
    let mut add = |pid: Pid, task_id: String| {
        if !found.iter().any(|s| s.pid == pid) {
            found.push(ShimProcess { pid, task_id });
        }
    };
    // Read in the order a shim moves (berthd's cgroup, the scope, its leaf), so one that
    // moves while they are read is seen in the next place rather than missed.
    let me = Pid::this();
    for pid in own_cgroup(tree).map(|d| procs(&d)).unwrap_or_default() {
        if pid == me {
            continue;
        }
        if let Some(task_id) = shim_task(&cmdline(pid), tasks_dir) {
            if only.is_none_or(|o| o == task_id) {
                add(pid, task_id);
            }
        }
    }
    let ids = match only {
        Some(id) => vec![id.to_string()],
        None => tree.scoped_tasks(),
    };
    for id in ids.into_iter().filter(|i| crate::names::is_task_id(i)) {
        for dir in [tree.scope(&id), tree.shim(&id)] {
            for pid in procs(&dir) {
                if shim_task(&cmdline(pid), tasks_dir).as_deref() == Some(id.as_str()) {
                    add(pid, id.clone());
                }
            }
        }
    }
    found
}

/// The start every libcontainer id of a task's containers shares: 12 hex digits of the task
/// id and `-`; the container's index follows.
pub(super) fn container_id_prefix(task_id: &str) -> String {
    format!("{}-", &task_id[..12.min(task_id.len())])
}

/// Whether `name` has the shape of the ids berth gives libcontainer: 12 hex digits of the
/// task id, `-`, the container's index.
pub(super) fn is_container_id(name: &str) -> bool {
    match name.split_once('-') {
        Some((task, index)) => {
            task.len() == 12
                && task.bytes().all(|b| b.is_ascii_hexdigit())
                && !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Mount points at or below `root` in `/proc/self/mountinfo`'s text, deepest first.
pub(super) fn mounts_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(root))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    v
}

/// mountinfo writes space, tab, newline and backslash as octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or below `root`.
pub(super) fn unmount_under(root: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for m in mounts_under(&text, root) {
        if let Err(e) = umount2(&m, MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %m.display(), error = %e, "stale mount not removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shim_is_known_by_its_command_line() {
        assert_eq!(
            shim_task_dir(b"/usr/bin/berthd\0shim\0/var/lib/berth/tasks/ab\0"),
            Some(PathBuf::from("/var/lib/berth/tasks/ab"))
        );
        assert_eq!(
            shim_task_dir(b"systemd-run\0--scope\0--\0/usr/bin/berthd\0shim\0/t/ab\0"),
            Some(PathBuf::from("/t/ab"))
        );
        assert_eq!(
            shim_task_dir(b"/usr/bin/berth-shim\0/t/cd\0"),
            Some(PathBuf::from("/t/cd"))
        );
        assert_eq!(shim_task_dir(b"/usr/bin/berth-shim\0"), None);
        assert_eq!(shim_task_dir(b"/usr/bin/berthd\0"), None);
        assert_eq!(shim_task_dir(b"shim\0"), None);
        assert_eq!(shim_task_dir(b"sleep\0infinity\0"), None);
        assert_eq!(shim_task_dir(b""), None);
    }

    #[test]
    fn only_berths_container_ids_are_recognised() {
        assert!(is_container_id("0123456789ab-0"));
        assert!(is_container_id("0123456789ab-12"));
        assert!(!is_container_id("bus"));
        assert!(!is_container_id("0123456789ab-"));
        assert!(!is_container_id("0123456789xy-1"));
    }

    #[test]
    fn mounts_below_a_root_come_deepest_first_and_unescaped() {
        let text = "\
22 1 0:21 / /proc rw - proc proc rw
90 22 0:50 / /var/lib/berth/tasks/t1/containers/web/rootfs rw - overlay overlay rw
91 90 0:51 / /var/lib/berth/tasks/t1/containers/web/rootfs/dev rw - tmpfs tmpfs rw
92 22 0:52 / /var/lib/berth/tasks/t1/containers/my\\040app/rootfs rw - overlay overlay rw
93 22 0:53 / /var/lib/berth/tasks/t10/containers/x/rootfs rw - overlay overlay rw
";
        let got = mounts_under(text, Path::new("/var/lib/berth/tasks/t1"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/var/lib/berth/tasks/t1/containers/web/rootfs/dev"),
                PathBuf::from("/var/lib/berth/tasks/t1/containers/web/rootfs"),
                PathBuf::from("/var/lib/berth/tasks/t1/containers/my app/rootfs"),
            ]
        );
    }
}
