//! Open connections per target, from the kernel's connection table (`/proc/net/nf_conntrack`,
//! the host's namespace): what tells a draining target's connections have ended, and the
//! active-connection gauge. The parse is pure; a line it cannot read is skipped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;

/// Active connections by the (address, port) they were sent to.
pub type Counts = BTreeMap<(Ipv4Addr, u16), u32>;

/// A line's four-tuple, in the order the kernel writes them: the original direction's
/// destination, the reply direction's source.
fn tuple(line: &str) -> Option<(Ipv4Addr, Ipv4Addr, u16)> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "ipv4" {
        return None;
    }
    let _l3 = fields.next()?;
    if fields.next()? != "tcp" {
        return None;
    }
    let _l4 = fields.next()?;
    let _ttl = fields.next()?;
    let state = fields.next()?;
    // TIME_WAIT and CLOSE are connections both ends have finished with.
    if matches!(state, "TIME_WAIT" | "CLOSE") {
        return None;
    }
    let mut dst = Vec::with_capacity(2);
    let mut src = Vec::with_capacity(2);
    let mut sport = Vec::with_capacity(2);
    for f in fields {
        if let Some(v) = f.strip_prefix("dst=") {
            dst.push(v);
        } else if let Some(v) = f.strip_prefix("src=") {
            src.push(v);
        } else if let Some(v) = f.strip_prefix("sport=") {
            sport.push(v);
        }
    }
    let original_dst: Ipv4Addr = dst.first()?.parse().ok()?;
    let reply_src: Ipv4Addr = src.get(1)?.parse().ok()?;
    let reply_sport: u16 = sport.get(1)?.parse().ok()?;
    Some((original_dst, reply_src, reply_sport))
}

/// Counts the translated (DNAT) connections not yet finished, by where they were sent.
pub fn count(text: impl BufRead) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Ok(line) = line else { break };
        if let Some((original_dst, reply_src, port)) = tuple(&line) {
            // A connection made to the task's own address is not one the balancer sent.
            if original_dst != reply_src {
                *counts.entry((reply_src, port)).or_default() += 1;
            }
        }
    }
    counts
}

/// Reads the table; `None` when the kernel shows none (no conntrack, or its proc file is
/// not built in).
pub fn read(path: &Path) -> Option<Counts> {
    let f = std::fs::File::open(path).ok()?;
    Some(count(BufReader::new(f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.7 dst=192.0.2.10 sport=40000 dport=8080 src=172.29.0.5 dst=192.0.2.7 sport=80 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.7 dst=192.0.2.10 sport=40001 dport=8080 src=172.29.0.5 dst=192.0.2.7 sport=80 dport=40001 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 60 SYN_RECV src=192.0.2.7 dst=192.0.2.10 sport=40002 dport=8080 src=172.29.0.6 dst=192.0.2.7 sport=80 dport=40002 mark=0 zone=0 use=2
ipv4     2 tcp      6 110 TIME_WAIT src=192.0.2.7 dst=192.0.2.10 sport=40003 dport=8080 src=172.29.0.6 dst=192.0.2.7 sport=80 dport=40003 [ASSURED] mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=172.29.0.1 dst=172.29.0.6 sport=5000 dport=80 src=172.29.0.6 dst=172.29.0.1 sport=80 dport=5000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 udp      17 20 src=192.0.2.7 dst=192.0.2.10 sport=53 dport=53 src=172.29.0.6 dst=192.0.2.7 sport=53 dport=53 mark=0 zone=0 use=2
ipv6     10 tcp      6 20 ESTABLISHED src=::1 dst=::1 sport=1 dport=2 src=::1 dst=::1 sport=2 dport=1
garbage
ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.2.7 dst=not-an-address sport=1 dport=2 src=172.29.0.9 dst=192.0.2.7 sport=80 dport=1
";

    #[test]
    fn counts_open_translated_tcp_connections_by_target() {
        let c = count(TABLE.as_bytes());
        let a = Ipv4Addr::new(172, 29, 0, 5);
        let b = Ipv4Addr::new(172, 29, 0, 6);
        assert_eq!(c.get(&(a, 80)), Some(&2));
        // The half-open one counts, the finished one and the direct one do not.
        assert_eq!(c.get(&(b, 80)), Some(&1));
        assert_eq!(c.len(), 2, "{c:?}");
    }
}
