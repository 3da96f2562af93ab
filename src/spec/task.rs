//! Validation of a whole task definition: task-level fields, volumes, and the checks that
//! span containers (unique names, references, memory rules).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::container;
use super::model::{ContainerDefinition, NetworkMode, SharedNamespace, TaskDefinition};
use super::order;
use super::sandbox;
use super::units;
use super::volumes;
use super::walk::{self, join, Report};

/// ECS's limit on containers per task definition.
pub const MAX_CONTAINERS: usize = 10;

const KNOWN: &[&str] = &[
    "family",
    "containerDefinitions",
    "cpu",
    "memory",
    "networkMode",
    "pidMode",
    "ipcMode",
    "volumes",
    "inferenceAccelerators",
    "runtimePlatform",
    "requiresCompatibilities",
];

const IGNORED: &[(&str, &str)] = &[
    ("taskRoleArn", "IAM roles have no meaning on one host"),
    ("executionRoleArn", "IAM roles have no meaning on one host"),
    ("placementConstraints", "there is one host"),
    (
        "proxyConfiguration",
        "App Mesh proxies are not managed by berth",
    ),
    ("tags", "kept only"),
    ("ephemeralStorage", "containers write to the host's disk"),
    ("enableFaultInjection", "not supported"),
    ("taskDefinitionArn", "output of DescribeTaskDefinition"),
    ("revision", "berth numbers revisions itself"),
    ("status", "output of DescribeTaskDefinition"),
    ("requiresAttributes", "output of DescribeTaskDefinition"),
    ("compatibilities", "output of DescribeTaskDefinition"),
    ("registeredAt", "output of DescribeTaskDefinition"),
    ("registeredBy", "output of DescribeTaskDefinition"),
    ("deregisteredAt", "output of DescribeTaskDefinition"),
];

pub fn validate(r: &mut Report, root: &Value) -> Option<TaskDefinition> {
    let obj = walk::object(r, root, "(top level)")?;
    walk::check_keys(r, obj, "", KNOWN, IGNORED);
    let family = family(r, obj);
    let cpu = task_size(r, obj, "cpu", units::parse_cpu);
    let memory = task_size(r, obj, "memory", units::parse_memory);
    let network_mode = match walk::string(r, obj, "", "networkMode") {
        None => NetworkMode::Bridge,
        Some(s) => NetworkMode::parse(&s).unwrap_or_else(|| {
            r.problem(
                "networkMode",
                format!("\"{s}\" must be one of bridge, host, awsvpc, none"),
            );
            NetworkMode::Bridge
        }),
    };
    let pid_mode = namespace_mode(r, obj, "pidMode", &["host", "task"]);
    let ipc_mode = namespace_mode(r, obj, "ipcMode", &["host", "task", "none"]);
    let (volumes, volume_names) = volumes::task_volumes(r, obj);
    refuse_remote_features(r, obj);
    let fargate_only = fargate_only(r, obj);

    let entries = walk::objects(r, obj, "", "containerDefinitions");
    if walk::get(obj, "containerDefinitions").is_none() || entries.is_empty() {
        r.problem(
            "containerDefinitions",
            "at least one container definition is required",
        );
    } else if entries.len() > MAX_CONTAINERS {
        r.problem(
            "containerDefinitions",
            format!(
                "{} containers; ECS allows at most {MAX_CONTAINERS}",
                entries.len()
            ),
        );
    }
    let mut containers = Vec::new();
    for (p, c) in &entries {
        if let Some(def) = container::validate(
            r,
            c,
            p,
            sandbox::Modes {
                network: network_mode,
                ipc: ipc_mode,
            },
        ) {
            containers.push(def);
        }
    }
    cross_checks(r, &entries, &volume_names, cpu, memory);
    host_ports_once(r, &containers, network_mode);
    order::cross_check(r, &containers);
    if !containers.is_empty() && !containers.iter().any(|c| c.essential) {
        r.problem(
            "containerDefinitions",
            "at least one container must be essential",
        );
    }
    Some(TaskDefinition {
        family: family?,
        cpu,
        memory,
        network_mode,
        pid_mode,
        ipc_mode,
        volumes,
        containers,
        fargate_only,
    })
}

/// Whether `requiresCompatibilities` names FARGATE and nothing else: such a definition gets
/// the daemon's `fargate_isolation` unless the caller chooses.
fn fargate_only(r: &mut Report, obj: &Map<String, Value>) -> bool {
    let names: Vec<&str> = match obj.get("requiresCompatibilities") {
        None | Some(Value::Null) => return false,
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            r.problem(
                "requiresCompatibilities",
                "must be a list such as [\"FARGATE\"]",
            );
            return false;
        }
    };
    names.contains(&"FARGATE") && names.iter().all(|n| *n == "FARGATE")
}

fn family(r: &mut Report, obj: &Map<String, Value>) -> Option<String> {
    let f = walk::string(r, obj, "", "family");
    match &f {
        None => r.problem("family", "is required"),
        Some(f) if !crate::names::is_ecs_name(f) => r.problem(
            "family",
            format!("\"{f}\" must be 1-255 letters, digits, hyphens or underscores"),
        ),
        _ => {}
    }
    f
}

fn task_size(
    r: &mut Report,
    obj: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Result<u64, String>,
) -> Option<u64> {
    let parsed = match walk::get(obj, key)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} must be a positive whole number")),
        Value::String(s) => parse(s),
        _ => Err("must be a number or a string such as \"512\"".to_string()),
    };
    parsed.map_err(|m| r.problem(key, m)).ok()
}

fn namespace_mode(
    r: &mut Report,
    obj: &Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Option<SharedNamespace> {
    let s = walk::string(r, obj, "", key)?;
    match s.as_str() {
        "host" => Some(SharedNamespace::Host),
        "task" => Some(SharedNamespace::Task),
        other if allowed.contains(&other) => None,
        other => {
            r.problem(
                key,
                format!("\"{other}\" must be one of {}", allowed.join(", ")),
            );
            None
        }
    }
}

fn refuse_remote_features(r: &mut Report, obj: &Map<String, Value>) {
    if walk::array(r, obj, "", "inferenceAccelerators").is_some_and(|a| !a.is_empty()) {
        r.problem(
            "inferenceAccelerators",
            "Elastic Inference is a remote AWS service; no host can provide it",
        );
    }
    if let Some(rp) = walk::get(obj, "runtimePlatform").and_then(Value::as_object) {
        if let Some(os) = walk::string(r, rp, "runtimePlatform", "operatingSystemFamily") {
            if os.starts_with("WINDOWS") {
                r.problem(
                    "runtimePlatform.operatingSystemFamily",
                    format!("\"{os}\": berth runs Linux containers only"),
                );
            }
        }
    }
}

type Entries<'a> = [(String, &'a Map<String, Value>)];

fn cross_checks(
    r: &mut Report,
    entries: &Entries,
    volumes: &HashSet<String>,
    cpu: Option<u64>,
    memory: Option<u64>,
) {
    let mut names = HashSet::new();
    for (p, c) in entries {
        if let Some(Value::String(n)) = walk::get(c, "name") {
            if !names.insert(n.as_str()) {
                r.problem(
                    join(p, "name"),
                    format!("container name \"{n}\" is used twice"),
                );
            }
        }
    }
    for (p, c) in entries {
        references(r, c, p, &names, volumes);
        let own_mem = walk::get(c, "memory").and_then(Value::as_u64);
        if memory.is_none() && own_mem.is_none() && walk::get(c, "memoryReservation").is_none() {
            r.problem(
                join(p, "memory"),
                "memory or memoryReservation is required when the task sets no memory",
            );
        }
        if let (Some(task), Some(own)) = (memory, own_mem) {
            if own > task {
                r.problem(
                    join(p, "memory"),
                    format!("{own} MiB exceeds the task's memory ({task} MiB)"),
                );
            }
        }
        if let (Some(task), Some(own)) = (cpu, walk::get(c, "cpu").and_then(Value::as_u64)) {
            if own > task {
                r.problem(
                    join(p, "cpu"),
                    format!("{own} units exceed the task's cpu ({task} units)"),
                );
            }
        }
    }
}

/// Two mappings of one task cannot bind the same host port: the second would fail at start.
fn host_ports_once(r: &mut Report, containers: &[ContainerDefinition], mode: NetworkMode) {
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, m) in c.port_mappings.iter().enumerate() {
            if let Some(port) = m.static_host_port(mode) {
                if !seen.insert((m.protocol, port)) {
                    r.problem(
                        format!("containerDefinitions[{i}].portMappings[{j}].hostPort"),
                        format!(
                            "{}/{port} is mapped twice in this task",
                            m.protocol.as_str()
                        ),
                    );
                }
            }
        }
    }
}

/// links, volumesFrom, dependsOn and mountPoints must name what the definition declares.
fn references(
    r: &mut Report,
    c: &Map<String, Value>,
    p: &str,
    names: &HashSet<&str>,
    volumes: &HashSet<String>,
) {
    let mut quiet = Report::default();
    for (i, link) in walk::strings(&mut quiet, c, p, "links")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let target = link.split(':').next().unwrap_or_default();
        if !names.contains(target) {
            r.problem(
                walk::index(&join(p, "links"), i),
                format!("links to \"{target}\", which is not a container of this task"),
            );
        }
    }
    for (vp, v) in walk::objects(&mut quiet, c, p, "volumesFrom") {
        if let Some(src) = walk::string(&mut quiet, v, &vp, "sourceContainer") {
            if !names.contains(src.as_str()) {
                r.problem(
                    join(&vp, "sourceContainer"),
                    format!("\"{src}\" is not a container of this task"),
                );
            }
        }
    }
    for (dp, d) in walk::objects(r, c, p, "dependsOn") {
        match walk::string(r, d, &dp, "containerName") {
            Some(n) if !names.contains(n.as_str()) => r.problem(
                join(&dp, "containerName"),
                format!("\"{n}\" is not a container of this task"),
            ),
            None => r.problem(join(&dp, "containerName"), "is required"),
            _ => {}
        }
        match walk::string(r, d, &dp, "condition").as_deref() {
            Some("START" | "COMPLETE" | "SUCCESS" | "HEALTHY") => {}
            Some(other) => r.problem(
                join(&dp, "condition"),
                format!("\"{other}\" must be START, COMPLETE, SUCCESS or HEALTHY"),
            ),
            None => r.problem(join(&dp, "condition"), "is required"),
        }
    }
    for (mp, m) in walk::objects(&mut quiet, c, p, "mountPoints") {
        if let Some(v) = walk::string(&mut quiet, m, &mp, "sourceVolume") {
            if !volumes.contains(&v) {
                r.problem(
                    join(&mp, "sourceVolume"),
                    format!("\"{v}\" is not declared in volumes"),
                );
            }
        }
    }
}
