//! The capacity books: what the host registers and what admitted tasks have reserved of it.
//! Pure data and arithmetic; the engine owns the one instance and the faces read copies.

use crate::host::HostResources;

/// CPU units per CPU, as ECS counts them.
pub const UNITS_PER_CPU: u64 = 1024;

/// An amount of the resources berth books.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_units: u64,
    pub memory_mib: u64,
}

/// What the host offers and what is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Books {
    registered: Resources,
    reserved: Resources,
}

impl Books {
    /// Registers the host: 1024 units per online CPU and MemTotal less the operator's reserve.
    pub fn register(host: HostResources, memory_reserve_mib: u64) -> Books {
        Books {
            registered: Resources {
                cpu_units: u64::from(host.cpus) * UNITS_PER_CPU,
                memory_mib: host.memory_mib.saturating_sub(memory_reserve_mib),
            },
            reserved: Resources::default(),
        }
    }

    pub fn registered(&self) -> Resources {
        self.registered
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
mod tests {
    use super::*;

    #[test]
    fn registration_counts_units_and_subtracts_the_reserve() {
        let b = Books::register(
            HostResources {
                cpus: 2,
                memory_mib: 1967,
            },
            256,
        );
        assert_eq!(
            b.registered(),
            Resources {
                cpu_units: 2048,
                memory_mib: 1711
            }
        );
        assert_eq!(b.remaining(), b.registered());
    }

    #[test]
    fn reserve_larger_than_memory_leaves_zero() {
        let b = Books::register(
            HostResources {
                cpus: 1,
                memory_mib: 100,
            },
            256,
        );
        assert_eq!(b.registered().memory_mib, 0);
    }
}
