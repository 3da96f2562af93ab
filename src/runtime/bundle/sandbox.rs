//! The container's sandbox in `config.json`: capabilities, rlimits, extra mounts (tmpfs,
//! volumes), sysctls and the privileged switch, from its [`Sandbox`] over Docker's defaults.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::spec::sandbox::{Sandbox, CAPABILITIES as ALL_CAPABILITIES};

/// Docker's default capability set: what images are written to expect.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A host directory (or volume) bound into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Where the init binary appears in a container with `initProcessEnabled` (named `init`, as
/// the ECS agent's own test looks for it).
pub const INIT_PATH: &str = "/dev/init";

/// A device node of the host's, as the runtime found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub container_path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub access: String,
}

/// `linux.devices`: the nodes libcontainer makes in the container's /dev.
pub fn device_nodes(devices: &[DeviceNode]) -> Value {
    devices
        .iter()
        .map(|d| {
            json!({"path": d.container_path, "type": d.kind.to_string(), "major": d.major,
                   "minor": d.minor, "fileMode": 0o666, "uid": 0, "gid": 0})
        })
        .collect()
}

/// The device cgroup rules beyond libcontainer's defaults (deny all but the standard nodes):
/// each node given with its permissions, or every device when privileged, as Docker does.
pub fn with_devices(mut resources: Value, devices: &[DeviceNode], privileged: bool) -> Value {
    let mut rules: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({"allow": true, "type": d.kind.to_string(), "major": d.major,
                   "minor": d.minor, "access": d.access})
        })
        .collect();
    if privileged {
        rules.push(json!({"allow": true, "type": "a", "access": "rwm"}));
    }
    if !rules.is_empty() {
        resources["devices"] = rules.into();
    }
    resources
}

/// The capability set: Docker's (all of them when privileged), then `drop`, then `add`, each
/// of which may say `ALL`.
pub fn capabilities(s: &Sandbox) -> Vec<String> {
    let all = || {
        ALL_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    let mut caps: Vec<String> = if s.privileged {
        all()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    };
    if s.cap_drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    caps.retain(|c| !s.cap_drop.contains(c));
    if s.cap_add.iter().any(|c| c == "ALL") {
        caps = all();
    }
    for c in &s.cap_add {
        if c != "ALL" && !caps.contains(c) {
            caps.push(c.clone());
        }
    }
    caps.into_iter().map(|c| format!("CAP_{c}")).collect()
}

/// `RLIMIT_NOFILE` 1048576 as Docker gives it, each `ulimits` entry over it.
pub fn rlimits(s: &Sandbox) -> Vec<Value> {
    let mut out = Vec::new();
    if !s.ulimits.iter().any(|u| u.name == "nofile") {
        out.push(json!({"type": "RLIMIT_NOFILE", "hard": 1048576u64, "soft": 1048576u64}));
    }
    for u in &s.ulimits {
        out.push(json!({"type": format!("RLIMIT_{}", u.name.to_uppercase()),
                        "hard": u.hard, "soft": u.soft}));
    }
    out
}

/// `/dev/shm` as Docker sizes it (64 MiB) or `sharedMemorySize`.
pub fn shm(s: &Sandbox) -> Value {
    let size = format!("size={}m", s.shm_size_mib.unwrap_or(64));
    json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
           "options": ["nosuid", "noexec", "nodev", "mode=1777", size]})
}

/// `linuxParameters.tmpfs` mounts (with Docker's nosuid,nodev) and the volume binds.
pub fn extra_mounts(s: &Sandbox, binds: &[Bind]) -> Vec<Value> {
    let mut out: Vec<Value> = s
        .tmpfs
        .iter()
        .map(|t| {
            let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
            options.extend(t.options.iter().cloned());
            options.push(format!("size={}m", t.size_mib));
            json!({"destination": t.container_path, "type": "tmpfs", "source": "tmpfs",
                   "options": options})
        })
        .collect();
    out.extend(binds.iter().map(|b| {
        let mode = if b.read_only { "ro" } else { "rw" };
        json!({"destination": b.destination, "type": "bind", "source": b.source,
               "options": ["rbind", mode]})
    }));
    out
}

pub fn sysctl(s: &Sandbox) -> Value {
    Value::Object(
        s.sysctls
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

/// Paths of /proc and /sys hidden or read-only, as Docker has them; none when privileged.
pub fn masked_and_readonly(s: &Sandbox) -> (Value, Value) {
    if s.privileged {
        return (json!([]), json!([]));
    }
    (
        json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
            "/sys/devices/virtual/powercap"
        ]),
        json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::sandbox::{Tmpfs, Ulimit};

    #[test]
    fn add_and_drop_work_over_dockers_set() {
        let s = Sandbox {
            cap_add: vec!["SYS_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            ..Sandbox::default()
        };
        let caps = capabilities(&s);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert!(caps.contains(&"CAP_CHOWN".to_string()));
        let none = capabilities(&Sandbox {
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["KILL".into()],
            ..Sandbox::default()
        });
        assert_eq!(none, ["CAP_KILL"]);
        let p = capabilities(&Sandbox {
            privileged: true,
            ..Sandbox::default()
        });
        assert_eq!(p.len(), ALL_CAPABILITIES.len());
        assert!(!capabilities(&Sandbox::default()).contains(&"CAP_NET_ADMIN".to_string()));
    }

    #[test]
    fn a_nofile_ulimit_replaces_the_default() {
        let s = Sandbox {
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 123,
                hard: 234,
            }],
            ..Sandbox::default()
        };
        let r = rlimits(&s);
        assert_eq!(
            r,
            [json!({"type": "RLIMIT_NOFILE", "hard": 234, "soft": 123})]
        );
        assert_eq!(rlimits(&Sandbox::default())[0]["soft"], 1048576);
    }

    #[test]
    fn tmpfs_and_binds_become_mounts() {
        let s = Sandbox {
            tmpfs: vec![Tmpfs {
                container_path: "/dev/tmpfs".into(),
                size_mib: 100,
                options: vec!["ro".into(), "noexec".into()],
            }],
            ..Sandbox::default()
        };
        let m = extra_mounts(
            &s,
            &[Bind {
                source: "/srv/x".into(),
                destination: "/data".into(),
                read_only: true,
            }],
        );
        assert_eq!(
            m[0]["options"],
            json!(["nosuid", "nodev", "ro", "noexec", "size=100m"])
        );
        assert_eq!(m[1]["options"], json!(["rbind", "ro"]));
        assert_eq!(m[1]["source"], "/srv/x");
        assert_eq!(
            shm(&Sandbox {
                shm_size_mib: Some(100),
                ..Sandbox::default()
            })["options"][4],
            "size=100m"
        );
    }
}
