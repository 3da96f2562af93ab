//! Validation of one `containerDefinitions[i]` entry into a typed [`ContainerDefinition`].
//! Cross-container checks (names, links, dependsOn targets) live in `task.rs`.

use serde_json::{Map, Value};

use super::model::{ContainerDefinition, NetworkMode, PortMapping, Protocol};
use super::order;
use super::sandbox;
use super::volumes;
use super::walk::{self, join, Report};

/// Smallest hard or soft memory limit ECS accepts for a container, in MiB.
pub const MIN_CONTAINER_MIB: u64 = 6;

const KNOWN: &[&str] = &[
    "name",
    "image",
    "cpu",
    "memory",
    "memoryReservation",
    "links",
    "portMappings",
    "essential",
    "entryPoint",
    "command",
    "environment",
    "environmentFiles",
    "mountPoints",
    "volumesFrom",
    "linuxParameters",
    "dependsOn",
    "startTimeout",
    "stopTimeout",
    "hostname",
    "user",
    "workingDirectory",
    "disableNetworking",
    "privileged",
    "readonlyRootFilesystem",
    "dnsServers",
    "dnsSearchDomains",
    "extraHosts",
    "dockerSecurityOptions",
    "interactive",
    "pseudoTerminal",
    "dockerLabels",
    "ulimits",
    "healthCheck",
    "systemControls",
    "resourceRequirements",
    "secrets",
    "repositoryCredentials",
];

const IGNORED: &[(&str, &str)] = &[
    (
        "logConfiguration",
        "logs go to the journal and the task's log files",
    ),
    (
        "firelensConfiguration",
        "log routing has no meaning on one host",
    ),
    ("restartPolicy", "not supported yet"),
    ("versionConsistency", "images are imported, not pulled"),
];

fn valid_image(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:_@-".contains(c))
}

pub fn validate(
    r: &mut Report,
    c: &Map<String, Value>,
    path: &str,
    modes: sandbox::Modes,
) -> Option<ContainerDefinition> {
    let mode = modes.network;
    walk::check_keys(r, c, path, KNOWN, IGNORED);
    let name = walk::string(r, c, path, "name");
    match &name {
        None if walk::get(c, "name").is_none() => r.problem(join(path, "name"), "is required"),
        Some(n) if !crate::names::is_ecs_name(n) => r.problem(
            join(path, "name"),
            format!("\"{n}\" must be 1-255 letters, digits, hyphens or underscores"),
        ),
        _ => {}
    }
    let image = walk::string(r, c, path, "image");
    match &image {
        None if walk::get(c, "image").is_none() => r.problem(join(path, "image"), "is required"),
        Some(i) if !valid_image(i) => r.problem(
            join(path, "image"),
            format!("\"{i}\" contains invalid characters"),
        ),
        _ => {}
    }
    let cpu = walk::integer(r, c, path, "cpu").unwrap_or(0);
    let memory = walk::integer(r, c, path, "memory");
    let memory_reservation = walk::integer(r, c, path, "memoryReservation");
    for (key, v) in [
        ("memory", memory),
        ("memoryReservation", memory_reservation),
    ] {
        if let Some(v) = v.filter(|v| *v < MIN_CONTAINER_MIB) {
            r.problem(
                join(path, key),
                format!("must be at least {MIN_CONTAINER_MIB} MiB, not {v}"),
            );
        }
    }
    if let (Some(hard), Some(soft)) = (memory, memory_reservation) {
        if soft > hard {
            r.problem(
                join(path, "memoryReservation"),
                format!("{soft} MiB must not exceed memory ({hard} MiB)"),
            );
        }
    }
    let environment = environment(r, c, path);
    let port_mappings = port_mappings(r, c, path, mode);
    let mount_points = volumes::mount_points(r, c, path);
    let volumes_from = volumes::volumes_from(r, c, path);
    security_options(r, c, path);
    let sandbox = sandbox::validate(r, c, path, modes);
    resource_requirements(r, c, path);
    if walk::get(c, "inferenceDevices").is_some() {
        r.problem(
            join(path, "inferenceDevices"),
            "Elastic Inference is a remote AWS service; no host can provide it",
        );
    }
    let def = ContainerDefinition {
        name: name?,
        image: image?,
        cpu,
        memory,
        memory_reservation,
        essential: walk::boolean(r, c, path, "essential").unwrap_or(true),
        entry_point: walk::strings(r, c, path, "entryPoint"),
        command: walk::strings(r, c, path, "command"),
        environment,
        working_directory: working_directory(r, c, path),
        user: walk::string(r, c, path, "user"),
        port_mappings,
        stop_timeout: walk::integer(r, c, path, "stopTimeout"),
        links: links(r, c, path),
        hostname: walk::string(r, c, path, "hostname"),
        dns_servers: addresses(r, c, path, "dnsServers"),
        dns_search_domains: walk::strings(r, c, path, "dnsSearchDomains").unwrap_or_default(),
        extra_hosts: extra_hosts(r, c, path),
        sandbox,
        docker_labels: labels(r, c, path),
        mount_points,
        volumes_from,
        environment_files: environment_files(r, c, path),
        depends_on: order::depends_on(c, path),
        start_timeout: order::start_timeout(r, c, path),
        health_check: order::health_check(r, c, path),
        secrets: super::secrets::secrets(r, c, path),
        repository_credentials: super::secrets::repository_credentials(r, c, path),
    };
    Some(def)
}

/// Docker's rule (an absolute path), and no `..`: berthd makes a missing working directory
/// in the container's root filesystem, from the host's side.
fn working_directory(r: &mut Report, c: &Map<String, Value>, path: &str) -> Option<String> {
    let dir = walk::string(r, c, path, "workingDirectory")?;
    if !crate::spec::is_inside_path(&dir) {
        r.problem(
            join(path, "workingDirectory"),
            format!("{dir:?} must be an absolute path without `..` components"),
        );
    }
    Some(dir)
}

fn environment(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<(String, String)> {
    walk::objects(r, c, path, "environment")
        .into_iter()
        .filter_map(|(p, e)| {
            let name = walk::string(r, e, &p, "name");
            if name.is_none() {
                r.problem(join(&p, "name"), "is required");
            }
            Some((name?, walk::string(r, e, &p, "value").unwrap_or_default()))
        })
        .collect()
}

/// `environmentFiles`: on one host each `value` is a file of the host's (ECS's S3 objects are
/// out of reach), read when the task starts.
fn environment_files(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (p, f) in walk::objects(r, c, path, "environmentFiles") {
        match walk::string(r, f, &p, "type").as_deref() {
            None | Some("s3") | Some("file") => {}
            Some(other) => r.problem(join(&p, "type"), format!("\"{other}\" must be s3 or file")),
        }
        match walk::string(r, f, &p, "value") {
            Some(v) if v.starts_with("arn:") => r.problem(
                join(&p, "value"),
                format!("\"{v}\" is an S3 object, which one host cannot read; copy the file to the host and give its absolute path"),
            ),
            Some(v) if !v.starts_with('/') => r.problem(
                join(&p, "value"),
                format!("\"{v}\" must be an absolute path of a file on the host"),
            ),
            Some(v) => out.push(v),
            None => r.problem(join(&p, "value"), "is required"),
        }
    }
    out
}

fn port_mappings(
    r: &mut Report,
    c: &Map<String, Value>,
    path: &str,
    mode: NetworkMode,
) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for (p, m) in walk::objects(r, c, path, "portMappings") {
        let container = walk::integer(r, m, &p, "containerPort");
        let host = walk::integer(r, m, &p, "hostPort");
        let protocol = match walk::string(r, m, &p, "protocol").as_deref() {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(other) => {
                r.problem(
                    join(&p, "protocol"),
                    format!("\"{other}\" must be tcp or udp"),
                );
                Protocol::Tcp
            }
        };
        for (key, v) in [("containerPort", container), ("hostPort", host)] {
            if v.is_some_and(|v| v > 65535) {
                r.problem(join(&p, key), "must be a port number up to 65535");
            }
        }
        if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) {
            if let (Some(cp), Some(hp)) = (container, host.filter(|h| *h != 0)) {
                if cp != hp {
                    let mode = if mode == NetworkMode::Host {
                        "host"
                    } else {
                        "awsvpc"
                    };
                    r.problem(join(&p, "hostPort"), format!("in {mode} network mode the host port must equal the container port ({hp} != {cp})"));
                }
            }
        }
        match container {
            Some(cp) if (1..=65535).contains(&cp) => out.push(PortMapping {
                container_port: cp as u16,
                host_port: host.filter(|h| (1..=65535).contains(h)).map(|h| h as u16),
                protocol,
            }),
            Some(0) => r.problem(join(&p, "containerPort"), "must be between 1 and 65535"),
            None => match walk::string(r, m, &p, "containerPortRange") {
                None => r.problem(join(&p, "containerPort"), "is required"),
                Some(range) => match port_range(&range) {
                    // Each port of a range gets a dynamic host port, as ECS gives them.
                    Some((lo, hi)) => out.extend((lo..=hi).map(|cp| PortMapping {
                        container_port: cp,
                        host_port: None,
                        protocol,
                    })),
                    None => r.problem(
                        join(&p, "containerPortRange"),
                        format!("\"{range}\" must be FIRST-LAST, ports 1-65535, FIRST < LAST, at most {MAX_RANGE} ports"),
                    ),
                },
            },
            _ => {}
        }
    }
    out
}

/// The most ports one `containerPortRange` may name.
const MAX_RANGE: u16 = 1000;

fn port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo >= 1 && lo < hi && hi - lo < MAX_RANGE).then_some((lo, hi))
}

fn labels(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<(String, String)> {
    let Some(v) = walk::get(c, "dockerLabels") else {
        return Vec::new();
    };
    let p = join(path, "dockerLabels");
    let Some(obj) = walk::object(r, v, &p) else {
        return Vec::new();
    };
    obj.iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            _ => {
                r.problem(join(&p, k), "must be a string");
                None
            }
        })
        .collect()
}

fn links(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<(String, String)> {
    walk::strings(r, c, path, "links")
        .unwrap_or_default()
        .into_iter()
        .map(|l| match l.split_once(':') {
            Some((name, alias)) => (name.to_string(), alias.to_string()),
            None => (l.clone(), l),
        })
        .collect()
}

fn addresses(r: &mut Report, c: &Map<String, Value>, path: &str, key: &str) -> Vec<String> {
    let list = walk::strings(r, c, path, key).unwrap_or_default();
    for (i, a) in list.iter().enumerate() {
        if a.parse::<std::net::IpAddr>().is_err() {
            r.problem(
                walk::index(&join(path, key), i),
                format!("\"{a}\" is not an IP address"),
            );
        }
    }
    list
}

fn extra_hosts(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<(String, String)> {
    walk::objects(r, c, path, "extraHosts")
        .into_iter()
        .filter_map(|(p, e)| {
            let host = walk::string(r, e, &p, "hostname");
            let ip = walk::string(r, e, &p, "ipAddress");
            if host.is_none() {
                r.problem(join(&p, "hostname"), "is required");
            }
            match &ip {
                None => r.problem(join(&p, "ipAddress"), "is required"),
                Some(a) if a.parse::<std::net::IpAddr>().is_err() => r.problem(
                    join(&p, "ipAddress"),
                    format!("\"{a}\" is not an IP address"),
                ),
                _ => {}
            }
            Some((host?, ip?))
        })
        .collect()
}

/// `dockerSecurityOptions`: `no-new-privileges` and `seccomp:unconfined` are honoured (by the
/// sandbox); AppArmor and SELinux labels are reported as ignored (berth loads no such profile,
/// which is what Docker does on a host without them); a seccomp profile from a file and
/// anything else is refused, never dropped.
fn security_options(r: &mut Report, c: &Map<String, Value>, path: &str) {
    let p = join(path, "dockerSecurityOptions");
    for (i, opt) in walk::strings(r, c, path, "dockerSecurityOptions")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = walk::index(&p, i);
        if opt == "no-new-privileges" || opt == "seccomp:unconfined" {
            continue;
        }
        if opt.starts_with("apparmor:") || opt.starts_with("label:") {
            r.ignore(
                format!("{at} ({opt})"),
                "berth loads no AppArmor profile or SELinux label; the container runs under berth's seccomp filter and capabilities",
            );
        } else if opt.starts_with("seccomp:") {
            r.problem(at, format!("\"{opt}\": a seccomp profile from a file is not supported; berth applies its default filter, or none with seccomp:unconfined"));
        } else if opt.starts_with("credentialspec:") {
            r.problem(at, format!("\"{opt}\": credentialspec is a Windows (gMSA) option; a Linux host cannot honour it and will not drop a security option silently"));
        } else {
            r.problem(at, format!("\"{opt}\" is not a security option berth knows (no-new-privileges, seccomp:unconfined, apparmor:, label:)"));
        }
    }
}

fn resource_requirements(r: &mut Report, c: &Map<String, Value>, path: &str) {
    for (p, req) in walk::objects(r, c, path, "resourceRequirements") {
        match walk::string(r, req, &p, "type").as_deref() {
            Some("GPU") => {
                walk::integer(r, req, &p, "value");
            }
            Some("InferenceAccelerator") => r.problem(join(&p, "type"), "InferenceAccelerator (Elastic Inference) is a remote AWS service; no host can provide it"),
            Some(other) => r.problem(join(&p, "type"), format!("\"{other}\" must be GPU")),
            None => r.problem(join(&p, "type"), "is required"),
        }
    }
}
