//! The capacity books: what the host registers and what admitted tasks have reserved of it.
//! Pure data and arithmetic; the engine owns the one instance and the faces read copies.

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

    pub fn reserved(&self) -> Resources {
        self.reserved
    }

    /// Takes `want` from the books, or says which resource is short and by how much.
    pub fn admit(&mut self, want: Resources) -> Result<(), Refusal> {
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
        self.reserved.memory_mib += want.memory_mib;
        self.reserved.cpu_units += want.cpu_units;
        Ok(())
    }

    /// Charges a task admitted before a restart, whether it fits or not: it is running.
    pub fn force(&mut self, held: Resources) {
        self.reserved.memory_mib += held.memory_mib;
        self.reserved.cpu_units += held.cpu_units;
    }

    /// Gives back what an admitted task reserved.
    pub fn release(&mut self, held: Resources) {
        self.reserved.memory_mib = self.reserved.memory_mib.saturating_sub(held.memory_mib);
        self.reserved.cpu_units = self.reserved.cpu_units.saturating_sub(held.cpu_units);
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
    fn admission_refuses_what_does_not_fit_and_release_gives_back() {
        let mut b = Books::register(
            HostResources {
                cpus: 1,
                memory_mib: 1256,
            },
            256,
        );
        let t = Resources {
            cpu_units: 512,
            memory_mib: 600,
        };
        b.admit(t).unwrap();
        let e = b.admit(t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RESOURCE:MEMORY: needs 600 MiB, 400 MiB of 1000 MiB remain"
        );
        b.admit(Resources {
            cpu_units: 512,
            memory_mib: 100,
        })
        .unwrap();
        assert!(matches!(
            b.admit(Resources {
                cpu_units: 1,
                memory_mib: 0
            }),
            Err(Refusal::Cpu { .. })
        ));
        b.release(t);
        assert_eq!(b.remaining().memory_mib, 900);
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
