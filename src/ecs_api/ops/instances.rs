//! Container instances: the host, the one instance of its cluster, with its capacity books as
//! ECS shows an instance's registered and remaining resources.

use serde_json::{json, Value};

use super::{keyed, page, str_field, strings, Context};
use crate::capacity::HostPort;
use crate::ecs_api::error::ApiError;
use crate::engine::Status;
use crate::spec::Protocol;

fn integer(name: &str, value: u64) -> Value {
    json!({"name": name, "type": "INTEGER", "integerValue": value, "doubleValue": 0.0, "longValue": 0})
}

fn ports<'a>(name: &str, protocol: Protocol, ports: impl Iterator<Item = &'a HostPort>) -> Value {
    let set: Vec<String> = ports
        .filter(|p| p.protocol == protocol)
        .map(|p| p.port.to_string())
        .collect();
    json!({"name": name, "type": "STRINGSET", "stringSetValue": set, "doubleValue": 0.0, "longValue": 0, "integerValue": 0})
}

/// ECS's ContainerInstance. As ECS does, registered PORTS are the ports kept for the host
/// and remaining PORTS are every port taken (the host's and those held for tasks).
pub fn shape(cx: &Context<'_>) -> Value {
    let cap = cx.engine.capacity();
    let tasks = cx.engine.tasks(false);
    let count = |f: &dyn Fn(Status) -> bool| tasks.iter().filter(|t| f(t.last_status)).count();
    let taken: Vec<HostPort> = cap
        .ports
        .host_ports()
        .chain(cap.ports.held().map(|(p, _)| p))
        .copied()
        .collect();
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "containerInstanceArn": cx.arns.instance(),
        "status": "ACTIVE",
        "agentConnected": true,
        "versionInfo": {"agentVersion": concat!("berth-", env!("CARGO_PKG_VERSION"))},
        "registeredResources": [
            integer("CPU", cap.registered.cpu_units),
            integer("MEMORY", cap.registered.memory_mib),
            ports("PORTS", Protocol::Tcp, cap.ports.host_ports()),
            ports("PORTS_UDP", Protocol::Udp, cap.ports.host_ports()),
        ],
        "remainingResources": [
            integer("CPU", cap.remaining.cpu_units),
            integer("MEMORY", cap.remaining.memory_mib),
            ports("PORTS", Protocol::Tcp, taken.iter()),
            ports("PORTS_UDP", Protocol::Udp, taken.iter()),
        ],
        "runningTasksCount": count(&|s| s == Status::Running),
        "pendingTasksCount": count(&|s| matches!(s, Status::Provisioning | Status::Pending)),
        "attributes": [
            {"name": "ecs.os-type", "value": "linux"},
            {"name": "ecs.cpu-architecture", "value": arch},
        ],
    })
}

pub fn list(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    // Berth's one instance is always ACTIVE: a DRAINING filter lists nothing.
    let status = str_field(body, "status")?;
    let arns = match status.as_deref() {
        None | Some("ACTIVE") => vec![cx.arns.instance()],
        Some(_) => Vec::new(),
    };
    let (arns, next) = page(keyed(arns), body, 100, false)?;
    Ok(json!({"containerInstanceArns": arns, "nextToken": next}))
}

pub fn describe(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let asked = strings(body, "containerInstances")?;
    if asked.is_empty() || asked.len() > 100 {
        return Err(ApiError::invalid(
            "containerInstances must name 1-100 container instances",
        ));
    }
    let mut instances = Vec::new();
    let mut failures = Vec::new();
    for given in asked {
        if cx.arns.is_instance(&given) {
            instances.push(shape(cx));
        } else {
            failures.push(json!({"arn": given, "reason": "MISSING"}));
        }
    }
    Ok(json!({"containerInstances": instances, "failures": failures}))
}
