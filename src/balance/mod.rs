//! Service load balancing, as ECS's `loadBalancers` with berth's listener in place of a target
//! group: what a service asks for (container, port, listener, deregistration delay), the
//! checks of that against its task definition, and which of its tasks are targets now. Pure:
//! `rules.rs` turns the targets into nftables chains, `conntrack.rs` reads the connections,
//! `balancer.rs` does the I/O and the engine (`engine/balancing.rs`) drives it.

pub mod balancer;
pub mod conntrack;
pub mod rules;

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::{NetworkMode, Protocol, TaskDefinition};

pub use balancer::{Balancer, BalancerError};

/// ECS's default `deregistration_delay.timeout_seconds`.
pub const DEFAULT_DEREGISTRATION_DELAY_SECS: u32 = 300;
/// ECS's bound on the same.
const MAX_DEREGISTRATION_DELAY_SECS: u32 = 3600;
/// ECS allows five load balancers per service.
const MAX_LOAD_BALANCERS: usize = 5;

/// One entry of a service's `loadBalancers`: new TCP connections to `listen` go to
/// `containerName:containerPort` of one of the service's targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub container_name: String,
    pub container_port: u16,
    /// Where the host listens: `0.0.0.0:PORT` is every address of the host.
    pub listen: SocketAddrV4,
    pub deregistration_delay_seconds: u32,
    /// Kept as given, so a definition written for ECS reads back the same; berth has no
    /// target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_name: Option<String>,
}

impl LoadBalancer {
    /// A port of the host's, as the capacity books hold it.
    pub fn listener_port(&self) -> crate::capacity::HostPort {
        crate::capacity::HostPort {
            protocol: Protocol::Tcp,
            port: self.listen.port(),
        }
    }
}

fn field(i: usize, name: &str) -> String {
    format!("loadBalancers[{i}].{name}")
}

/// Reads ECS's `loadBalancers` list (with berth's `listen` and `deregistrationDelaySeconds`);
/// every refusal names the field.
pub fn parse(v: &Value) -> Result<Vec<LoadBalancer>, String> {
    let list = v
        .as_array()
        .ok_or("loadBalancers: must be a list of {containerName, containerPort, listen}")?;
    if list.len() > MAX_LOAD_BALANCERS {
        return Err(format!(
            "loadBalancers: {} given, at most {MAX_LOAD_BALANCERS}",
            list.len()
        ));
    }
    let lbs = list
        .iter()
        .enumerate()
        .map(|(i, e)| parse_one(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in lbs.iter().enumerate() {
        if lbs[..i].iter().any(|b| b.listen.port() == a.listen.port()) {
            return Err(format!(
                "{}: port {} is another entry's listener already",
                field(i, "listen"),
                a.listen.port()
            ));
        }
    }
    Ok(lbs)
}

fn text(i: usize, e: &Value, name: &str) -> Result<Option<String>, String> {
    match e.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{}: must be a string", field(i, name))),
    }
}

fn parse_one(i: usize, e: &Value) -> Result<LoadBalancer, String> {
    if !e.is_object() {
        return Err(format!(
            "loadBalancers[{i}]: must be an object {{containerName, containerPort, listen}}"
        ));
    }
    let container_name = text(i, e, "containerName")?
        .ok_or_else(|| format!("{}: missing", field(i, "containerName")))?;
    let container_port = e
        .get("containerPort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{}: must be a port, 1-65535", field(i, "containerPort")))?;
    let listen = match text(i, e, "listen")? {
        None => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, container_port),
        Some(s) => parse_listen(&s).map_err(|why| format!("{}: {why}", field(i, "listen")))?,
    };
    let deregistration_delay_seconds = match e.get("deregistrationDelaySeconds") {
        None | Some(Value::Null) => DEFAULT_DEREGISTRATION_DELAY_SECS,
        Some(v) => v
            .as_u64()
            .filter(|d| *d <= u64::from(MAX_DEREGISTRATION_DELAY_SECS))
            .map(|d| d as u32)
            .ok_or_else(|| {
                format!(
                    "{}: must be 0-{MAX_DEREGISTRATION_DELAY_SECS} seconds",
                    field(i, "deregistrationDelaySeconds")
                )
            })?,
    };
    Ok(LoadBalancer {
        container_name,
        container_port,
        listen,
        deregistration_delay_seconds,
        target_group_arn: text(i, e, "targetGroupArn")?,
        load_balancer_name: text(i, e, "loadBalancerName")?,
    })
}

/// `ADDR:PORT` or `PORT` (every address); IPv4, a port above 0.
pub fn parse_listen(s: &str) -> Result<SocketAddrV4, String> {
    let addr = if s.contains(':') {
        s.parse::<SocketAddrV4>()
            .map_err(|_| format!("\"{s}\" is not IPV4:PORT (such as 0.0.0.0:8080)"))?
    } else {
        let port = s
            .parse::<u16>()
            .map_err(|_| format!("\"{s}\" is not IPV4:PORT (such as 0.0.0.0:8080)"))?;
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
    };
    if addr.port() == 0 {
        return Err(format!("\"{s}\": the port must be above 0"));
    }
    if addr.ip().is_multicast() || addr.ip().is_broadcast() {
        return Err(format!("\"{s}\": not an address of this host"));
    }
    Ok(addr)
}

/// Whether `def`'s tasks can be targets of `lbs`: the container and its TCP port exist, and
/// the network mode gives each task an address of its own.
pub fn check(lbs: &[LoadBalancer], def: &TaskDefinition, reference: &str) -> Result<(), String> {
    for (i, lb) in lbs.iter().enumerate() {
        let c = def
            .containers
            .iter()
            .find(|c| c.name == lb.container_name)
            .ok_or_else(|| {
                format!(
                    "{}: {reference} has no container \"{}\"",
                    field(i, "containerName"),
                    lb.container_name
                )
            })?;
        if !c
            .port_mappings
            .iter()
            .any(|m| m.container_port == lb.container_port && m.protocol == Protocol::Tcp)
        {
            return Err(format!(
                "{}: container {} of {reference} maps no TCP port {} (its portMappings must list it)",
                field(i, "containerPort"),
                c.name,
                lb.container_port
            ));
        }
        match def.network_mode {
            NetworkMode::Bridge | NetworkMode::Awsvpc => {}
            NetworkMode::Host => {
                return Err(format!(
                    "{}: {reference} uses networkMode host, where port {} is the host's own: a second task (a rolling update, a scale-out) could not bind it; use bridge or awsvpc",
                    field(i, "containerPort"),
                    lb.container_port
                ))
            }
            NetworkMode::None => {
                return Err(format!(
                    "{}: {reference} uses networkMode none: its tasks have no address to send connections to",
                    field(i, "containerPort")
                ))
            }
        }
    }
    Ok(())
}

/// How a target stands, as the faces show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetState {
    /// Serving, but not yet seen to accept a connection: no traffic yet.
    Initial,
    Healthy,
    /// Being stopped: no new connections, its own kept until they end or the delay passes.
    Draining,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Draining => "draining",
        }
    }
}

/// One task behind one of a service's listeners.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub task_id: String,
    pub address: Ipv4Addr,
    pub port: u16,
}

impl Target {
    /// Where its connections go.
    pub fn endpoint(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address, self.port)
    }
}

/// What the balancing needs of a service task.
#[derive(Debug, Clone)]
pub struct TaskView<'a> {
    pub id: &'a str,
    /// RUNNING, not being stopped, and HEALTHY where it has health checks.
    pub serving: bool,
    pub draining: bool,
    pub network: &'a crate::network::TaskNetwork,
}

/// The service's targets for `lb`, with their states: each serving task with an address for
/// the container, and each draining one.
pub fn targets(lb: &LoadBalancer, tasks: &[TaskView<'_>]) -> Vec<(Target, TargetState)> {
    let mut v: Vec<(Target, TargetState)> = tasks
        .iter()
        .filter(|t| t.serving || t.draining)
        .filter_map(|t| {
            let iface = t.network.interface_of(&lb.container_name)?;
            let target = Target {
                task_id: t.id.to_string(),
                address: iface.address,
                port: lb.container_port,
            };
            let state = if t.draining {
                TargetState::Draining
            } else {
                TargetState::Healthy
            };
            Some((target, state))
        })
        .collect();
    v.sort();
    v
}

/// New connections per minute per target between two readings of the targets' counters
/// `elapsed_us` apart. A target new since the first reading counts from its start; one whose
/// counter went back (its chain made again) counts from zero.
pub fn per_target_per_minute(
    before: &std::collections::BTreeMap<String, u64>,
    now: &std::collections::BTreeMap<String, u64>,
    elapsed_us: u64,
) -> f64 {
    if now.is_empty() || elapsed_us == 0 {
        return 0.0;
    }
    let new: u64 = now
        .iter()
        .map(|(chain, n)| match before.get(chain) {
            Some(b) if b <= n => n - b,
            _ => *n,
        })
        .sum();
    new as f64 * 60e6 / elapsed_us as f64 / now.len() as f64
}

#[cfg(test)]
mod tests;
