//! The capacity books: what the host registers and what admitted tasks have reserved of it.
//! Pure data and arithmetic; the engine owns the one instance and the faces read copies.

mod ports;

pub use ports::{HostPort, PortBook, PortHolder};

use crate::host::HostResources;

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
}

/// What one task asks of the books.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub holder: &'a str,
    pub resources: Resources,
    pub ports: &'a [HostPort],
}

/// What the host offers and what is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Books {
    registered: Resources,
    reserved: Resources,
    ports: PortBook,
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
        }
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
        self.force(claim);
        Ok(())
    }

    /// Charges a task admitted before a restart, whether it fits or not: it is running.
    pub fn force(&mut self, claim: Claim<'_>) {
        self.reserved.memory_mib += claim.resources.memory_mib;
        self.reserved.cpu_units += claim.resources.cpu_units;
        self.ports.take(claim.holder, claim.ports);
    }

    /// Gives back what an admitted task reserved.
    pub fn release(&mut self, claim: Claim<'_>) {
        let held = claim.resources;
        self.reserved.memory_mib = self.reserved.memory_mib.saturating_sub(held.memory_mib);
        self.reserved.cpu_units = self.reserved.cpu_units.saturating_sub(held.cpu_units);
        self.ports.give_back(claim.holder, claim.ports);
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
