//! Host ports in the books: which task holds each (protocol, port), and which the host keeps
//! for itself. A port is held by one task at a time, whatever the task's other claims.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::RangeInclusive;

use crate::spec::Protocol;

/// One host port of one protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct HostPort {
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.port)
    }
}

/// Who has a port that a task asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    Task(String),
    /// Kept by the host: `reserved_ports` in the config, or berthd's own listener.
    Host,
    /// A service's load-balancer listener.
    Listener(String),
}

/// How a service's listener holds its port in the books (a task id is hex, never this).
pub const LISTENER_HOLDER: &str = "service:";

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortHolder::Task(id) => write!(f, "held by task {id}"),
            PortHolder::Host => write!(f, "reserved for the host (reserved_ports in berthd.toml)"),
            PortHolder::Listener(s) => write!(f, "held by service {s}'s load balancer listener"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortBook {
    host: BTreeSet<HostPort>,
    held: BTreeMap<HostPort, String>,
}

impl PortBook {
    pub fn new(host: impl IntoIterator<Item = HostPort>) -> PortBook {
        PortBook {
            host: host.into_iter().collect(),
            held: BTreeMap::new(),
        }
    }

    /// The first of `want` someone else has, and who.
    pub fn conflict(&self, want: &[HostPort]) -> Option<(HostPort, PortHolder)> {
        want.iter().find_map(|p| {
            if self.host.contains(p) {
                Some((*p, PortHolder::Host))
            } else {
                self.held.get(p).map(|id| {
                    let holder = match id.strip_prefix(LISTENER_HOLDER) {
                        Some(service) => PortHolder::Listener(service.to_string()),
                        None => PortHolder::Task(id.clone()),
                    };
                    (*p, holder)
                })
            }
        })
    }

    /// Up to `n` ports of `range` nobody holds, searched from after the highest one held in
    /// it, so a port just given back is not handed out again at once.
    pub fn free_in(&self, protocol: Protocol, range: RangeInclusive<u16>, n: usize) -> Vec<u16> {
        let (lo, hi) = (*range.start(), *range.end());
        let start = self
            .held
            .keys()
            .filter(|p| p.protocol == protocol && range.contains(&p.port))
            .map(|p| p.port)
            .max()
            .map_or(lo, |p| if p >= hi { lo } else { p + 1 });
        (start..=hi)
            .chain(lo..start)
            .filter(|port| {
                let p = HostPort {
                    protocol,
                    port: *port,
                };
                !self.host.contains(&p) && !self.held.contains_key(&p)
            })
            .take(n)
            .collect()
    }

    pub fn take(&mut self, holder: &str, ports: &[HostPort]) {
        for p in ports {
            self.held.insert(*p, holder.to_string());
        }
    }

    /// Gives back the ports `holder` has; a port since re-taken by another task stays theirs.
    pub fn give_back(&mut self, holder: &str, ports: &[HostPort]) {
        for p in ports {
            if self.held.get(p).is_some_and(|h| h == holder) {
                self.held.remove(p);
            }
        }
    }

    /// Ports usable by tasks, per protocol: every port 1-65535 not kept by the host.
    pub fn registered(&self, protocol: Protocol) -> u64 {
        65535 - self.host.iter().filter(|p| p.protocol == protocol).count() as u64
    }

    pub fn reserved(&self, protocol: Protocol) -> u64 {
        self.held.keys().filter(|p| p.protocol == protocol).count() as u64
    }

    pub fn remaining(&self, protocol: Protocol) -> u64 {
        self.registered(protocol)
            .saturating_sub(self.reserved(protocol))
    }

    pub fn host_ports(&self) -> impl Iterator<Item = &HostPort> {
        self.host.iter()
    }

    /// Who holds `port` (a task id, or a listener's `service:NAME`).
    pub fn holder(&self, port: &HostPort) -> Option<&String> {
        self.held.get(port)
    }

    pub fn held(&self) -> impl Iterator<Item = (&HostPort, &String)> {
        self.held.iter()
    }
}
