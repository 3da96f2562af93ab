//! One container's OCI runtime configuration (`config.json`), made from its ECS container
//! definition layered over its image's configuration the way ECS/Docker layer them. Pure: the
//! root filesystem path, cgroup path and the image's `/etc/passwd` come in as data.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::image::ImageConfig;
use crate::spec::{ContainerDefinition, NetworkMode, SharedNamespace};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("container {container}: no command to run: the image has no Entrypoint or Cmd and the container definition gives no entryPoint or command")]
    NoCommand { container: String },
    #[error("container {container}: user {user:?} is not in the image's /etc/passwd")]
    UnknownUser { container: String, user: String },
    #[error("container {container}: group {group:?} is not in the image's /etc/group")]
    UnknownGroup { container: String, group: String },
}

/// What the task decides for all its containers.
#[derive(Debug, Clone)]
pub struct TaskContext<'a> {
    pub task_id: &'a str,
    pub network_mode: NetworkMode,
    pub pid_mode: Option<SharedNamespace>,
    pub ipc_mode: Option<SharedNamespace>,
    pub pids_max: u64,
    /// The host's name: in `host` network mode the containers carry it, as on ECS and Docker.
    pub host_name: &'a str,
}

mod sandbox;
mod seccomp;

pub use sandbox::{Bind, DeviceNode, INIT_PATH};

/// What the host provides one container: its network namespace and files, its volumes.
#[derive(Debug, Clone, Default)]
pub struct Provided {
    /// The namespace it joins (bridge, awsvpc); `None`: one of its own (none) or the host's.
    pub netns: Option<PathBuf>,
    /// The `/etc/hosts` and `/etc/resolv.conf` berth wrote for it.
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// Volumes (`mountPoints`, `volumesFrom`) bound into it.
    pub binds: Vec<Bind>,
    /// The init binary bound at `/dev/init` (`initProcessEnabled`).
    pub init: Option<PathBuf>,
    /// Host device nodes made in it (`linuxParameters.devices`).
    pub devices: Vec<DeviceNode>,
    /// The task's one `/dev/shm` (`ipcMode` task), bound instead of a tmpfs of its own.
    pub shm: Option<PathBuf>,
}

/// The image's account files, read from its top-most layer that has them.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub passwd: String,
    pub group: String,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process arguments: ECS `entryPoint`/`command` over the image's Entrypoint/Cmd, as
/// Docker merges them (an entryPoint given drops the image's Cmd).
pub fn arguments(def: &ContainerDefinition, image: &ImageConfig) -> Vec<String> {
    match &def.entry_point {
        Some(ep) if !ep.is_empty() => {
            let mut args = ep.clone();
            args.extend(def.command.clone().unwrap_or_default());
            args
        }
        _ => {
            let mut args = image.entrypoint.clone().unwrap_or_default();
            match &def.command {
                Some(c) if !c.is_empty() => args.extend(c.clone()),
                _ => args.extend(image.cmd.clone().unwrap_or_default()),
            }
            args
        }
    }
}

/// The environment: the image's, a default PATH, then the definition's, later keys winning.
pub fn environment(def: &ContainerDefinition, image: &ImageConfig, hostname: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match env.iter_mut().find(|(key, _)| key == k) {
        Some(e) => e.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    };
    set("HOSTNAME", hostname);
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        set("PATH", &DEFAULT_PATH[5..]);
    }
    for (k, v) in &def.environment {
        set(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn lookup(file: &str, name: &str, field: usize) -> Option<u32> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(field)?.parse().ok())
}

/// `user` as uid and gid: numbers as they are, names through the image's account files.
pub fn resolve_user(
    container: &str,
    user: Option<&str>,
    accounts: &Accounts,
) -> Result<(u32, u32), BundleError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup(&accounts.passwd, u, 2).ok_or_else(|| BundleError::UnknownUser {
            container: container.to_string(),
            user: u.to_string(),
        })?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&accounts.group, g, 2).ok_or_else(|| BundleError::UnknownGroup {
                container: container.to_string(),
                group: g.to_string(),
            })?,
        },
        // The user's primary group, when the passwd file knows the user; else the uid's group 0.
        None => accounts
            .passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&u) || f.get(2) == Some(&uid.to_string().as_str()))
            .and_then(|f| f.get(3)?.parse().ok())
            .unwrap_or(0),
    };
    Ok((uid, gid))
}

fn namespaces(task: &TaskContext, net: &Provided, def: &ContainerDefinition) -> Vec<Value> {
    let mut ns = vec!["mount", "cgroup"];
    if task.pid_mode != Some(SharedNamespace::Host) {
        ns.push("pid");
    }
    if task.ipc_mode != Some(SharedNamespace::Host) {
        ns.push("ipc");
    }
    let own_network = task.network_mode != NetworkMode::Host || def.sandbox.disable_networking;
    if own_network && net.netns.is_none() {
        ns.push("network");
    }
    // Always a UTS namespace of its own: in host mode it starts with the host's name, and a
    // container changing it does not rename the host.
    ns.push("uts");
    let mut v: Vec<Value> = ns.into_iter().map(|t| json!({ "type": t })).collect();
    if let Some(path) = &net.netns {
        v.push(json!({"type": "network", "path": path}));
    }
    v
}

fn mounts(task: &TaskContext, net: &Provided, def: &ContainerDefinition) -> Vec<Value> {
    let sys_mode = if def.sandbox.privileged { "rw" } else { "ro" };
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        match &net.shm {
            Some(shared) => json!({"destination": "/dev/shm", "type": "bind", "source": shared,
                                   "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]}),
            None => sandbox::shm(&def.sandbox),
        },
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", sys_mode]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for (dest, source) in [
        ("/etc/hosts", &net.hosts),
        ("/etc/resolv.conf", &net.resolv_conf),
    ] {
        if let Some(source) = source {
            m.push(
                json!({"destination": dest, "type": "bind", "source": source,
                          "options": ["rbind", "rw"]}),
            );
        }
    }
    if task.network_mode == NetworkMode::Host && !def.sandbox.disable_networking {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(f).exists() {
                m.push(json!({"destination": f, "type": "bind", "source": f,
                              "options": ["rbind", "ro"]}));
            }
        }
    }
    m.extend(sandbox::extra_mounts(&def.sandbox, &net.binds));
    if let Some(init) = &net.init {
        m.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init,
                      "options": ["rbind", "ro"]}),
        );
    }
    m
}

fn resources(def: &ContainerDefinition, pids_max: u64) -> Value {
    let mib = |m: u64| m * 1024 * 1024;
    let mut memory = serde_json::Map::new();
    if let Some(m) = def.memory {
        memory.insert("limit".into(), mib(m).into());
        // OCI's swap is memory+swap: equal to the limit means no swap, unless maxSwap asks.
        let swap = m.saturating_add(def.sandbox.max_swap_mib.unwrap_or(0));
        memory.insert("swap".into(), mib(swap).into());
    }
    if let Some(r) = def.memory_reservation {
        memory.insert("reservation".into(), mib(r).into());
    }
    // ECS/Docker give a container with no cpu the minimum share, 2.
    let shares = def.cpu.max(2);
    json!({
        "memory": memory,
        "cpu": {"shares": shares},
        "pids": {"limit": pids_max},
    })
}

/// The container's host name: the host's in host mode (as on ECS and Docker), else its
/// `hostname` or the task id's first 12 characters.
pub fn hostname(task: &TaskContext, def: &ContainerDefinition) -> String {
    match (task.network_mode, &def.hostname) {
        (NetworkMode::Host, _) => task.host_name.to_string(),
        (_, Some(h)) => h.clone(),
        _ => task.task_id.chars().take(12).collect(),
    }
}

/// The whole `config.json` of one container.
pub fn config(
    task: &TaskContext,
    net: &Provided,
    def: &ContainerDefinition,
    image: &ImageConfig,
    accounts: &Accounts,
    rootfs: &Path,
    cgroups_path: &Path,
) -> Result<Value, BundleError> {
    let mut args = arguments(def, image);
    if args.is_empty() {
        return Err(BundleError::NoCommand {
            container: def.name.clone(),
        });
    }
    let hostname = hostname(task, def);
    let user = def.user.as_deref().or(image.user.as_deref());
    let (uid, gid) = resolve_user(&def.name, user, accounts)?;
    let cwd = def
        .working_directory
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".into());
    let sb = &def.sandbox;
    if net.init.is_some() {
        // tini: -s keeps it reaping when another process is PID 1 (pidMode task or host).
        args.splice(0..0, [INIT_PATH.to_string(), "-s".into(), "--".into()]);
    }
    let caps = sandbox::capabilities(sb);
    let (masked, readonly) = sandbox::masked_and_readonly(sb);
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": environment(def, image, &hostname),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": sandbox::rlimits(sb)
        },
        "root": {"path": rootfs, "readonly": sb.readonly_root},
        "annotations": def.docker_labels.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<String, Value>>(),
        "hostname": hostname,
        "mounts": mounts(task, net, def),
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": sandbox::with_devices(resources(def, task.pids_max), &net.devices, sb.privileged),
            "devices": sandbox::device_nodes(&net.devices),
            "namespaces": namespaces(task, net, def),
            "sysctl": sandbox::sysctl(sb),
            "maskedPaths": masked,
            "readonlyPaths": readonly
        }
    });
    // Only `true` is written: libcontainer 0.7 loads the filter before dropping capabilities
    // only when the key is absent, and `false` would have it load unprivileged and fail.
    if sb.no_new_privileges {
        config["process"]["noNewPrivileges"] = true.into();
    }
    if let Some(profile) = seccomp::profile(sb, &caps) {
        config["linux"]["seccomp"] = profile;
    }
    Ok(config)
}

#[cfg(test)]
mod tests;
