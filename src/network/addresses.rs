//! The bridge's IPv4 subnet and the pool of task addresses in it. Pure data: the capacity
//! books hold one pool, and every address held is on a task record, so a restarted berthd
//! rebuilds the pool from the tasks it re-adopts and never hands an address out twice.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network such as `172.29.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not an IPv4 subnet such as 172.29.0.0/16 (prefix 8-29, host bits zero)")]
pub struct SubnetError(String);

impl TryFrom<String> for Subnet {
    type Error = SubnetError;
    fn try_from(s: String) -> Result<Subnet, SubnetError> {
        s.parse()
    }
}

impl std::str::FromStr for Subnet {
    type Err = SubnetError;
    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let bad = || SubnetError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let network: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        // Narrower than /29 leaves no room for tasks beside the gateway.
        if !(8..=29).contains(&prefix) {
            return Err(bad());
        }
        let subnet = Subnet { network, prefix };
        if u32::from(network) & !subnet.mask() != 0 {
            return Err(bad());
        }
        Ok(subnet)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    fn base(&self) -> u32 {
        u32::from(self.network)
    }

    /// The bridge's own address: the first in the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == self.base()
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask() & other.mask();
        self.base() & m == other.base() & m
    }

    /// Addresses tasks may have: all but the network, the gateway and the broadcast.
    fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        self.base() + 2..=self.base() + size - 2
    }
}

/// Which task holds which address, and where the next search starts: addresses are handed
/// out round the subnet, so one just given back is the last to be reused (no stale ARP entry
/// or connection in a peer points at a new owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    subnet: Subnet,
    held: BTreeMap<Ipv4Addr, String>,
    next: u32,
}

impl AddressPool {
    pub fn new(subnet: Subnet) -> AddressPool {
        AddressPool {
            subnet,
            held: BTreeMap::new(),
            next: *subnet.hosts().start(),
        }
    }

    pub fn subnet(&self) -> Subnet {
        self.subnet
    }

    /// `n` free addresses, not yet taken; `None` when the subnet has fewer.
    pub fn pick(&self, n: usize) -> Option<Vec<Ipv4Addr>> {
        let hosts = self.subnet.hosts();
        let (lo, hi) = (*hosts.start(), *hosts.end());
        let start = self.next.clamp(lo, hi);
        let picked: Vec<Ipv4Addr> = (start..=hi)
            .chain(lo..start)
            .map(Ipv4Addr::from)
            .filter(|a| !self.held.contains_key(a))
            .take(n)
            .collect();
        (picked.len() == n).then_some(picked)
    }

    /// Whoever else holds one of `want`.
    pub fn conflict(&self, holder: &str, want: &[Ipv4Addr]) -> Option<(Ipv4Addr, String)> {
        want.iter().find_map(|a| {
            self.held
                .get(a)
                .filter(|h| *h != holder)
                .map(|h| (*a, h.clone()))
        })
    }

    pub fn take(&mut self, holder: &str, addresses: &[Ipv4Addr]) {
        for a in addresses {
            self.held.insert(*a, holder.to_string());
            let after = u32::from(*a).saturating_add(1);
            if after > self.next || self.next > *self.subnet.hosts().end() {
                self.next = after;
            }
        }
    }

    pub fn give_back(&mut self, holder: &str, addresses: &[Ipv4Addr]) {
        for a in addresses {
            if self.held.get(a).is_some_and(|h| h == holder) {
                self.held.remove(a);
            }
        }
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// How many task addresses the subnet has.
    pub fn size(&self) -> usize {
        self.subnet.hosts().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(s: &str) -> AddressPool {
        AddressPool::new(s.parse().unwrap())
    }

    #[test]
    fn subnet_parses_and_refuses_host_bits_and_odd_prefixes() {
        let s: Subnet = "172.29.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(172, 29, 0, 1));
        assert!(s.contains(Ipv4Addr::new(172, 29, 200, 3)));
        assert!(!s.contains(Ipv4Addr::new(172, 30, 0, 3)));
        for bad in [
            "172.29.0.1/16",
            "172.29.0.0",
            "172.29.0.0/30",
            "x/16",
            "10.0.0.0/4",
        ] {
            let e = bad.parse::<Subnet>().unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        let a: Subnet = "10.0.0.0/8".parse().unwrap();
        let b: Subnet = "10.20.0.0/16".parse().unwrap();
        let c: Subnet = "172.29.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&b));
    }

    #[test]
    fn addresses_skip_network_gateway_and_broadcast() {
        let mut p = pool("192.168.7.0/29");
        assert_eq!(p.size(), 5);
        let all = p.pick(5).unwrap();
        assert_eq!(all.first(), Some(&Ipv4Addr::new(192, 168, 7, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(192, 168, 7, 6)));
        p.take("a", &all);
        assert_eq!(p.pick(1), None);
    }

    #[test]
    fn a_freed_address_is_reused_last() {
        let mut p = pool("192.168.7.0/29");
        let a = p.pick(2).unwrap();
        p.take("t1", &a[..1]);
        p.take("t2", &a[1..]);
        p.give_back("t1", &a[..1]);
        let next = p.pick(1).unwrap();
        assert_ne!(next, a[..1], "just freed, reused first");
        p.take("t3", &next);
        // Round the subnet: the rest, then the freed one.
        let rest = p.pick(3).unwrap();
        assert_eq!(rest.last(), Some(&a[0]));
    }

    #[test]
    fn restored_holders_are_never_handed_out_again() {
        let mut p = pool("10.9.0.0/24");
        let x = Ipv4Addr::new(10, 9, 0, 2);
        p.take("old", &[x]);
        assert!(!p.pick(200).unwrap().contains(&x));
        assert_eq!(p.conflict("new", &[x]), Some((x, "old".into())));
        assert_eq!(p.conflict("old", &[x]), None);
        p.give_back("other", &[x]);
        assert_eq!(p.held(), 1, "only the holder gives it back");
    }
}
