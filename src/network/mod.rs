//! Task networking on berth's bridge: what a task's network is (addresses, published ports,
//! as ECS shows them), and the host plumbing behind it — a network namespace per container
//! (`bridge`) or per task (`awsvpc`), a veth pair into berth's bridge, and nftables DNAT rules
//! in berth's own table. `host` and `none` need none of this.
//!
//! The model is decided by the engine under its lock (addresses and dynamic ports come from
//! the capacity books); [`Networks`] makes it real for any backend.

pub mod addresses;
pub mod files;
mod host;
mod links;
pub mod netns;
pub mod nft;
pub mod rules;
pub mod stats;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use addresses::{AddressPool, Subnet};
pub use host::{NetworkConfig, NetworkError, Networks};

use crate::spec::{NetworkMode, Protocol, TaskDefinition};

/// One end of a task in the bridge: a container's (bridge) or the whole task's (awsvpc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// The container it belongs to; `None` for the task's one interface in awsvpc mode.
    pub container: Option<String>,
    pub address: Ipv4Addr,
    /// The host end of its veth pair (named from the task id: at most 15 bytes).
    pub host_link: String,
    /// Its namespace's file name under berth's netns directory.
    pub netns: String,
}

/// ECS's `networkBindings` entry: a host port forwarded to a container's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    pub container_name: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
    #[serde(rename = "bindIP")]
    pub bind_ip: String,
}

/// A task's network on the bridge, fixed at admission and kept on the task record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNetwork {
    pub interfaces: Vec<Interface>,
    pub bindings: Vec<NetworkBinding>,
}

/// How many bridge addresses a task of `def` takes.
pub fn addresses_needed(def: &TaskDefinition) -> usize {
    match def.network_mode {
        NetworkMode::Bridge => def.containers.len(),
        NetworkMode::Awsvpc => 1,
        NetworkMode::Host | NetworkMode::None => 0,
    }
}

/// The mappings that publish a port on the host but name no host port: each takes one from
/// the ephemeral range. (awsvpc publishes only mappings that give their hostPort.)
pub fn dynamic_ports_needed(def: &TaskDefinition) -> Vec<Protocol> {
    match def.network_mode {
        NetworkMode::Bridge => def
            .containers
            .iter()
            .flat_map(|c| &c.port_mappings)
            .filter(|m| m.host_port.is_none())
            .map(|m| m.protocol)
            .collect(),
        _ => Vec::new(),
    }
}

fn host_link(task_id: &str, i: usize) -> String {
    format!("bv{}{i}", &task_id[..task_id.len().min(10)])
}

/// Lays the task's network out over the addresses and dynamic host ports the books gave it
/// (`dynamic` in the order of [`dynamic_ports_needed`]).
pub fn assign(
    def: &TaskDefinition,
    task_id: &str,
    addresses: &[Ipv4Addr],
    dynamic: &[u16],
) -> TaskNetwork {
    let per_container = def.network_mode == NetworkMode::Bridge;
    let interfaces = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| Interface {
            container: per_container.then(|| def.containers[i].name.clone()),
            address: *a,
            host_link: host_link(task_id, i),
            netns: format!("{task_id}-{i}"),
        })
        .collect();
    let mut dynamic = dynamic.iter();
    let mut bindings = Vec::new();
    for c in &def.containers {
        for m in &c.port_mappings {
            let host_port = match (def.network_mode, m.host_port) {
                (NetworkMode::Bridge, None) => dynamic.next().copied(),
                (NetworkMode::Bridge | NetworkMode::Awsvpc, h) => h,
                _ => None,
            };
            if let Some(host_port) = host_port {
                bindings.push(NetworkBinding {
                    container_name: c.name.clone(),
                    container_port: m.container_port,
                    host_port,
                    protocol: m.protocol,
                    bind_ip: "0.0.0.0".into(),
                });
            }
        }
    }
    TaskNetwork {
        interfaces,
        bindings,
    }
}

impl TaskNetwork {
    /// The interface a container is on: its own (bridge) or the task's (awsvpc).
    pub fn interface_of(&self, container: &str) -> Option<&Interface> {
        self.interfaces
            .iter()
            .find(|i| i.container.as_deref() == Some(container))
            .or_else(|| self.interfaces.iter().find(|i| i.container.is_none()))
    }

    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        self.interfaces.iter().map(|i| i.address).collect()
    }

    /// The DNAT rules its bindings need.
    pub fn forwards(&self) -> Vec<rules::Forward> {
        self.bindings
            .iter()
            .filter_map(|b| {
                Some(rules::Forward {
                    protocol: b.protocol,
                    host_port: b.host_port,
                    address: self.interface_of(&b.container_name)?.address,
                    port: b.container_port,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
