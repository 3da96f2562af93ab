//! The capacity books: what the host registers and what admitted tasks have reserved of it.
//! Pure data and arithmetic; the engine owns the one instance and the faces read copies.

mod ports;

use ports::LISTENER_HOLDER;
pub use ports::{HostPort, PortBook, PortHolder};

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use crate::host::HostResources;
use crate::network::AddressPool;
use crate::spec::Protocol;

/// CPU units per CPU, as ECS counts them.
pub const UNITS_PER_CPU: u64 = 1024;

/// An amount of the resources berth books.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub cpu_units: u64,
    pub memory_mib: u64,
}

/// Why a task does not fit, in ECS's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("RESOURCE:MEMORY: needs {need} MiB, {remaining} MiB of {registered} MiB remain")]
    Memory {
        need: u64,
        remaining: u64,
        registered: u64,
    },
    #[error("RESOURCE:CPU: needs {need} CPU units, {remaining} of {registered} remain")]
    Cpu {
        need: u64,
        remaining: u64,
        registered: u64,
    },
    #[error("RESOURCE:PORTS: {port} {holder}")]
    Ports { port: HostPort, holder: PortHolder },
    #[error("RESOURCE:PORTS: needs {need} dynamic {protocol} ports, the ephemeral range {first}-{last} has {free} free")]
    DynamicPorts {
        protocol: &'static str,
        need: usize,
        free: usize,
        first: u16,
        last: u16,
    },
    #[error("RESOURCE:ADDRESSES: needs {need} addresses on the bridge, {remaining} of {size} in {subnet} remain")]
    Addresses {
        need: usize,
        remaining: usize,
        size: usize,
        subnet: String,
    },
    #[error("bridge and awsvpc network modes are unavailable on this host: {0}")]
    NoBridge(String),
    #[error("RESOURCE:DISK: the state directory {path} has {free_mib} MiB free, under the {min_mib} MiB berth keeps free; free space there, or lower min_free_disk_mib")]
    Disk {
        path: String,
        free_mib: u64,
        min_mib: u64,
    },
}

/// New work (a task, a definition, a service) is refused while the state directory's
/// filesystem has less than `min_mib` free: a task's upper layers and logs grow there, and the
/// store must always have room to record what it was told. `None` when the space is unknown.
pub fn disk(path: &str, free_bytes: Option<u64>, min_mib: u64) -> Result<(), Refusal> {
    let free_mib = match free_bytes {
        Some(b) => b / (1024 * 1024),
        None => return Ok(()),
    };
    if free_mib >= min_mib {
        return Ok(());
    }
    Err(Refusal::Disk {
        path: path.to_string(),
        free_mib,
        min_mib,
    })
}

/// How a service's listener is named as a port's holder.
fn listener_holder(service: &str) -> String {
    format!("{LISTENER_HOLDER}{service}")
}

/// What one task asks of the books.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub holder: &'a str,
    pub resources: Resources,
    pub ports: &'a [HostPort],
    /// Its addresses on berth's bridge.
    pub addresses: Vec<Ipv4Addr>,
}

/// Where bridge-mode tasks get their addresses and dynamic host ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub addresses: AddressPool,
    pub ephemeral: RangeInclusive<u16>,
}

/// What the host offers and what is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    registered: Resources,
    reserved: Resources,
    ports: PortBook,
    /// `Err` says why the host has no bridge for tasks.
    bridge: Result<Bridge, String>,
}

impl Books {
    /// Registers the host: 1024 units per online CPU, MemTotal less the operator's reserve,
    /// and every port but `host_ports`.
    pub fn register(
        host: HostResources,
        memory_reserve_mib: u64,
        host_ports: impl IntoIterator<Item = HostPort>,
    ) -> Books {
        Books {
            registered: Resources {
                cpu_units: u64::from(host.cpus) * UNITS_PER_CPU,
                memory_mib: host.memory_mib.saturating_sub(memory_reserve_mib),
            },
            reserved: Resources::default(),
            ports: PortBook::new(host_ports),
            bridge: Err("berthd has no bridge configured".into()),
        }
    }

    /// Gives the books a bridge to hand out, or the reason there is none.
    pub fn with_bridge(mut self, bridge: Result<Bridge, String>) -> Books {
        self.bridge = bridge;
        self
    }

    pub fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref().ok()
    }

    /// `n` free bridge addresses for a new task (taken on admission).
    pub fn pick_addresses(&self, n: usize) -> Result<Vec<Ipv4Addr>, Refusal> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let bridge = self
            .bridge
            .as_ref()
            .map_err(|e| Refusal::NoBridge(e.clone()))?;
        let pool = &bridge.addresses;
        pool.pick(n).ok_or_else(|| Refusal::Addresses {
            need: n,
            remaining: pool.size() - pool.held(),
            size: pool.size(),
            subnet: pool.subnet().to_string(),
        })
    }

    /// Free host ports from the ephemeral range, one per entry of `protocols`, in order.
    pub fn pick_ports(&self, protocols: &[Protocol]) -> Result<Vec<u16>, Refusal> {
        if protocols.is_empty() {
            return Ok(Vec::new());
        }
        let bridge = self
            .bridge
            .as_ref()
            .map_err(|e| Refusal::NoBridge(e.clone()))?;
        let range = &bridge.ephemeral;
        let mut out = Vec::new();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let need = protocols.iter().filter(|p| **p == protocol).count();
            let free = self.ports.free_in(protocol, range.clone(), need);
            if free.len() < need {
                return Err(Refusal::DynamicPorts {
                    protocol: protocol.as_str(),
                    need,
                    free: free.len(),
                    first: *range.start(),
                    last: *range.end(),
                });
            }
            out.push((protocol, free));
        }
        let mut next = [0usize; 2];
        Ok(protocols
            .iter()
            .map(|p| {
                let i = usize::from(*p == Protocol::Udp);
                next[i] += 1;
                out[i].1[next[i] - 1]
            })
            .collect())
    }

    pub fn ports(&self) -> &PortBook {
        &self.ports
    }

    pub fn registered(&self) -> Resources {
        self.registered
    }

    pub fn reserved(&self) -> Resources {
        self.reserved
    }

    /// Takes what `claim` asks from the books, or says which resource is short and by how much;
    /// a refused claim takes nothing.
    pub fn admit(&mut self, claim: Claim<'_>) -> Result<(), Refusal> {
        let want = claim.resources;
        let left = self.remaining();
        if want.memory_mib > left.memory_mib {
            return Err(Refusal::Memory {
                need: want.memory_mib,
                remaining: left.memory_mib,
                registered: self.registered.memory_mib,
            });
        }
        if want.cpu_units > left.cpu_units {
            return Err(Refusal::Cpu {
                need: want.cpu_units,
                remaining: left.cpu_units,
                registered: self.registered.cpu_units,
            });
        }
        if let Some((port, holder)) = self.ports.conflict(claim.ports) {
            return Err(Refusal::Ports { port, holder });
        }
        if let Ok(bridge) = &self.bridge {
            if let Some((a, holder)) = bridge.addresses.conflict(claim.holder, &claim.addresses) {
                // Never met in practice: picks are free under the engine's one lock.
                return Err(Refusal::NoBridge(format!(
                    "address {a} is held by task {holder}"
                )));
            }
        }
        self.force(claim);
        Ok(())
    }

    /// Charges a task admitted before a restart, whether it fits or not: it is running.
    pub fn force(&mut self, claim: Claim<'_>) {
        self.reserved.memory_mib += claim.resources.memory_mib;
        self.reserved.cpu_units += claim.resources.cpu_units;
        self.ports.take(claim.holder, claim.ports);
        if let Ok(bridge) = &mut self.bridge {
            bridge.addresses.take(claim.holder, &claim.addresses);
        }
    }

    /// Holds a service's listener ports, or says who has one of them.
    pub fn hold_listeners(&mut self, service: &str, ports: &[HostPort]) -> Result<(), Refusal> {
        if let Some((port, holder)) = self.ports.conflict(ports) {
            return Err(Refusal::Ports { port, holder });
        }
        self.ports.take(&listener_holder(service), ports);
        Ok(())
    }

    pub fn release_listeners(&mut self, service: &str, ports: &[HostPort]) {
        self.ports.give_back(&listener_holder(service), ports);
    }

    /// Whether `service`'s listener holds `port` (not a task that took it meanwhile).
    pub fn holds_listener(&self, service: &str, port: HostPort) -> bool {
        self.ports.holder(&port) == Some(&listener_holder(service))
    }

    /// Gives back what an admitted task reserved.
    pub fn release(&mut self, claim: Claim<'_>) {
        let held = claim.resources;
        self.reserved.memory_mib = self.reserved.memory_mib.saturating_sub(held.memory_mib);
        self.reserved.cpu_units = self.reserved.cpu_units.saturating_sub(held.cpu_units);
        self.ports.give_back(claim.holder, claim.ports);
        if let Ok(bridge) = &mut self.bridge {
            bridge.addresses.give_back(claim.holder, &claim.addresses);
        }
    }

    pub fn remaining(&self) -> Resources {
        Resources {
            cpu_units: self
                .registered
                .cpu_units
                .saturating_sub(self.reserved.cpu_units),
            memory_mib: self
                .registered
                .memory_mib
                .saturating_sub(self.reserved.memory_mib),
        }
    }
}

#[cfg(test)]
mod tests;
