//! The fields that shape a container's sandbox: `readonlyRootFilesystem`, `privileged`,
//! `ulimits`, `linuxParameters` (capabilities, tmpfs, shared memory, swap), `systemControls`,
//! `dockerSecurityOptions`, `disableNetworking`; validated into a typed [`Sandbox`].

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{NetworkMode, SharedNamespace};
use super::walk::{self, join, Report};

/// Linux capabilities by ECS's names (no `CAP_` prefix).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

pub const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// sysctls that live in a namespace of the container's (Docker's list): the rest would change
/// the host and are refused.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tmpfs {
    pub container_path: String,
    pub size_mib: u64,
    pub options: Vec<String>,
}

/// `linuxParameters.devices[]`: a host device node made in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: String,
    pub container_path: String,
    /// The device cgroup's access letters: `r`, `w`, `m`.
    pub access: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub readonly_root: bool,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `dockerSecurityOptions` `seccomp:unconfined`: no seccomp filter.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seccomp_unconfined: bool,
    pub disable_networking: bool,
    pub ulimits: Vec<Ulimit>,
    /// Capability names as given (`ALL` allowed), without `CAP_`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub tmpfs: Vec<Tmpfs>,
    pub shm_size_mib: Option<u64>,
    pub max_swap_mib: Option<u64>,
    pub sysctls: Vec<(String, String)>,
    /// `initProcessEnabled`: an init (tini) as PID 1 that reaps and forwards signals.
    pub init_process: bool,
    pub devices: Vec<Device>,
}

/// Where the container's namespaces come from, for the sysctl checks.
#[derive(Debug, Clone, Copy)]
pub struct Modes {
    pub network: NetworkMode,
    pub ipc: Option<SharedNamespace>,
}

/// Whether `dockerSecurityOptions` holds `opt` (its shape is checked with the container's).
fn security_option(c: &Map<String, Value>, opt: &str) -> bool {
    walk::get(c, "dockerSecurityOptions")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|o| o.as_str() == Some(opt)))
}

pub fn validate(r: &mut Report, c: &Map<String, Value>, path: &str, modes: Modes) -> Sandbox {
    let flag = |r: &mut Report, key| walk::boolean(r, c, path, key).unwrap_or(false);
    let mut s = Sandbox {
        readonly_root: flag(r, "readonlyRootFilesystem"),
        privileged: flag(r, "privileged"),
        disable_networking: flag(r, "disableNetworking"),
        no_new_privileges: security_option(c, "no-new-privileges"),
        seccomp_unconfined: security_option(c, "seccomp:unconfined"),
        ulimits: ulimits(r, c, path),
        sysctls: sysctls(r, c, path, modes),
        ..Sandbox::default()
    };
    if let Some(lp) = walk::get(c, "linuxParameters") {
        let p = join(path, "linuxParameters");
        if let Some(lp) = walk::object(r, lp, &p) {
            linux_parameters(r, lp, &p, &mut s);
        }
    }
    s
}

fn ulimits(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<Ulimit> {
    let mut out = Vec::new();
    for (p, u) in walk::objects(r, c, path, "ulimits") {
        let name = walk::string(r, u, &p, "name");
        match &name {
            Some(n) if !ULIMITS.contains(&n.as_str()) => r.problem(
                join(&p, "name"),
                format!("\"{n}\" is not a ulimit ({})", ULIMITS.join(", ")),
            ),
            None => r.problem(join(&p, "name"), "is required"),
            _ => {}
        }
        let soft = walk::integer(r, u, &p, "softLimit");
        let hard = walk::integer(r, u, &p, "hardLimit");
        for (key, v) in [("softLimit", soft), ("hardLimit", hard)] {
            if v.is_none() && walk::get(u, key).is_none() {
                r.problem(join(&p, key), "is required");
            }
        }
        match (name, soft, hard) {
            (_, Some(s), Some(h)) if s > h => r.problem(
                join(&p, "softLimit"),
                format!("{s} must not exceed hardLimit {h}"),
            ),
            (Some(name), Some(soft), Some(hard)) => out.push(Ulimit { name, soft, hard }),
            _ => {}
        }
    }
    out
}

fn sysctls(
    r: &mut Report,
    c: &Map<String, Value>,
    path: &str,
    modes: Modes,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (p, sc) in walk::objects(r, c, path, "systemControls") {
        let (Some(key), Some(value)) = (
            walk::string(r, sc, &p, "namespace"),
            walk::string(r, sc, &p, "value"),
        ) else {
            r.problem(&p, "needs namespace and value");
            continue;
        };
        let net = key.starts_with("net.");
        let ipc = IPC_SYSCTLS.contains(&key.as_str()) || key.starts_with("fs.mqueue.");
        let refusal = if !net && !ipc {
            Some("is not namespaced: setting it would change the host (namespaced: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)")
        } else if net && modes.network == NetworkMode::Host {
            Some("is the host's own in host network mode")
        } else if ipc && modes.ipc == Some(SharedNamespace::Host) {
            Some("is the host's own with ipcMode host")
        } else {
            None
        };
        match refusal {
            Some(why) => r.problem(join(&p, "namespace"), format!("\"{key}\" {why}")),
            None => out.push((key, value)),
        }
    }
    out
}

fn capabilities(r: &mut Report, lp: &Map<String, Value>, path: &str, key: &str) -> Vec<String> {
    let p = join(path, key);
    let list = walk::strings(r, lp, path, key).unwrap_or_default();
    for (i, cap) in list.iter().enumerate() {
        let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
        if bare != "ALL" && !CAPABILITIES.contains(&bare) {
            r.problem(
                walk::index(&p, i),
                format!("\"{cap}\" is not a Linux capability"),
            );
        }
    }
    list.into_iter()
        .map(|c| c.strip_prefix("CAP_").unwrap_or(&c).to_string())
        .collect()
}

const LINUX_PARAMETERS: &[&str] = &[
    "capabilities",
    "devices",
    "initProcessEnabled",
    "sharedMemorySize",
    "tmpfs",
    "maxSwap",
];

/// cgroup v2 has no per-cgroup swappiness: Docker on cgroup v2 ignores it too.
const LINUX_PARAMETERS_IGNORED: &[(&str, &str)] = &[(
    "swappiness",
    "cgroup v2 has no per-container swappiness; the host's vm.swappiness applies",
)];

fn linux_parameters(r: &mut Report, lp: &Map<String, Value>, path: &str, s: &mut Sandbox) {
    walk::check_keys(r, lp, path, LINUX_PARAMETERS, LINUX_PARAMETERS_IGNORED);
    if let Some(n) = walk::integer(r, lp, path, "swappiness").filter(|n| *n > 100) {
        r.problem(join(path, "swappiness"), format!("{n} is outside 0..100"));
    }
    if let Some(caps) = walk::get(lp, "capabilities") {
        let p = join(path, "capabilities");
        if let Some(caps) = walk::object(r, caps, &p) {
            s.cap_add = capabilities(r, caps, &p, "add");
            s.cap_drop = capabilities(r, caps, &p, "drop");
        }
    }
    for (p, t) in walk::objects(r, lp, path, "tmpfs") {
        let container_path = walk::string(r, t, &p, "containerPath");
        let size = walk::integer(r, t, &p, "size");
        match (&container_path, size) {
            (Some(cp), _) if !cp.starts_with('/') => r.problem(
                join(&p, "containerPath"),
                format!("\"{cp}\" is not an absolute path"),
            ),
            (_, Some(0)) | (_, None) => {
                r.problem(join(&p, "size"), "must be a size in MiB above 0")
            }
            (Some(cp), Some(size_mib)) => s.tmpfs.push(Tmpfs {
                container_path: cp.clone(),
                size_mib,
                options: walk::strings(r, t, &p, "mountOptions").unwrap_or_default(),
            }),
            (None, _) => r.problem(join(&p, "containerPath"), "is required"),
        }
    }
    s.shm_size_mib = walk::integer(r, lp, path, "sharedMemorySize").filter(|m| *m > 0);
    s.init_process = walk::boolean(r, lp, path, "initProcessEnabled").unwrap_or(false);
    s.devices = devices(r, lp, path);
    s.max_swap_mib = walk::integer(r, lp, path, "maxSwap");
    if let Some(v) = s.max_swap_mib.filter(|v| *v > i32::MAX as u64) {
        r.problem(
            join(path, "maxSwap"),
            format!("{v} MiB is past ECS's limit of {} MiB", i32::MAX),
        );
    }
}

fn devices(r: &mut Report, lp: &Map<String, Value>, path: &str) -> Vec<Device> {
    let mut out = Vec::new();
    for (p, d) in walk::objects(r, lp, path, "devices") {
        let host_path = match walk::string(r, d, &p, "hostPath") {
            Some(h) if h.starts_with('/') => h,
            Some(h) => {
                r.problem(
                    join(&p, "hostPath"),
                    format!("\"{h}\" is not an absolute path"),
                );
                continue;
            }
            None => {
                r.problem(join(&p, "hostPath"), "is required");
                continue;
            }
        };
        let permissions = walk::strings(r, d, &p, "permissions")
            .unwrap_or_else(|| vec!["read".into(), "write".into(), "mknod".into()]);
        let mut access = String::new();
        for (i, perm) in permissions.iter().enumerate() {
            match perm.as_str() {
                "read" => access.push('r'),
                "write" => access.push('w'),
                "mknod" => access.push('m'),
                other => r.problem(
                    walk::index(&join(&p, "permissions"), i),
                    format!("\"{other}\" must be read, write or mknod"),
                ),
            }
        }
        out.push(Device {
            container_path: walk::string(r, d, &p, "containerPath")
                .unwrap_or_else(|| host_path.clone()),
            host_path,
            access,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(json: &str, network: NetworkMode) -> Result<Sandbox, Vec<String>> {
        let v: Value = serde_json::from_str(json).unwrap();
        let mut r = Report::default();
        let s = validate(
            &mut r,
            v.as_object().unwrap(),
            "c",
            Modes { network, ipc: None },
        );
        if r.problems.is_empty() {
            Ok(s)
        } else {
            Err(r.problems.iter().map(|p| p.to_string()).collect())
        }
    }

    #[test]
    fn the_ecs_agents_own_fields_are_read() {
        let s = sandbox(r#"{"readonlyRootFilesystem":true,"privileged":null,
            "dockerSecurityOptions":["no-new-privileges"],
            "ulimits":[{"name":"nofile","softLimit":123,"hardLimit":234}],
            "systemControls":[{"namespace":"net.ipv4.conf.default.rp_filter","value":"0"}],
            "linuxParameters":{"capabilities":{"add":["SYS_ADMIN"],"drop":["CAP_MKNOD"]},
              "sharedMemorySize":100,"maxSwap":0,
              "tmpfs":[{"containerPath":"/dev/tmpfs","size":100,"mountOptions":["ro","noexec"]}]}}"#,
            NetworkMode::Bridge).unwrap();
        assert!(s.readonly_root && !s.privileged && s.no_new_privileges);
        assert_eq!(
            s.ulimits,
            [Ulimit {
                name: "nofile".into(),
                soft: 123,
                hard: 234
            }]
        );
        assert_eq!(s.cap_add, ["SYS_ADMIN"]);
        assert_eq!(s.cap_drop, ["MKNOD"]);
        assert_eq!(s.shm_size_mib, Some(100));
        assert_eq!(s.max_swap_mib, Some(0));
        assert_eq!(s.tmpfs[0].size_mib, 100);
        assert_eq!(
            s.sysctls,
            [(
                "net.ipv4.conf.default.rp_filter".to_string(),
                "0".to_string()
            )]
        );
        let s = sandbox(r#"{"linuxParameters":{"initProcessEnabled":true,
            "devices":[{"hostPath":"/dev/xvda","containerPath":"/dev/sda","permissions":["read"]}]}}"#,
            NetworkMode::Bridge).unwrap();
        assert!(s.init_process);
        assert_eq!(
            s.devices,
            [Device {
                host_path: "/dev/xvda".into(),
                container_path: "/dev/sda".into(),
                access: "r".into()
            }]
        );
    }

    #[test]
    fn host_wide_sysctls_and_unknown_capabilities_are_refused_by_path() {
        let e = sandbox(
            r#"{"systemControls":[{"namespace":"vm.swappiness","value":"1"}],
            "linuxParameters":{"capabilities":{"add":["SYS_WIZARD"]}}}"#,
            NetworkMode::Bridge,
        )
        .unwrap_err();
        assert!(
            e.iter().any(|p| p
                .starts_with("c.systemControls[0].namespace: \"vm.swappiness\" is not namespaced")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.starts_with("c.linuxParameters.capabilities.add[0]")),
            "{e:?}"
        );
        let e = sandbox(
            r#"{"systemControls":[{"namespace":"net.core.somaxconn","value":"1"}]}"#,
            NetworkMode::Host,
        )
        .unwrap_err();
        assert!(e[0].contains("host network mode"), "{e:?}");
    }

    #[test]
    fn swappiness_is_checked_then_reported_as_ignored() {
        let v: Value =
            serde_json::from_str(r#"{"linuxParameters":{"swappiness":60,"maxSwap":0}}"#).unwrap();
        let mut r = Report::default();
        validate(
            &mut r,
            v.as_object().unwrap(),
            "c",
            Modes {
                network: NetworkMode::None,
                ipc: None,
            },
        );
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(
            r.ignored
                .iter()
                .any(|i| i.starts_with("c.linuxParameters.swappiness")),
            "{:?}",
            r.ignored
        );
        assert!(sandbox(
            r#"{"linuxParameters":{"swappiness":101}}"#,
            NetworkMode::None
        )
        .unwrap_err()[0]
            .contains("swappiness: 101 is outside 0..100"));
    }

    #[test]
    fn a_ulimit_needs_both_limits_in_order() {
        let e = sandbox(
            r#"{"ulimits":[{"name":"nofile","softLimit":10}]}"#,
            NetworkMode::None,
        )
        .unwrap_err();
        assert!(e[0].contains("hardLimit: is required"), "{e:?}");
        let e = sandbox(
            r#"{"ulimits":[{"name":"nofile","softLimit":10,"hardLimit":5}]}"#,
            NetworkMode::None,
        )
        .unwrap_err();
        assert!(e[0].contains("must not exceed hardLimit 5"), "{e:?}");
    }
}
