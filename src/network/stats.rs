//! Network counters of a task's interfaces, read from the host end of each veth pair in
//! `/proc/net/dev` (one file for every link, never a process): what the host end receives, the
//! container sent, so the two directions are swapped into the container's view.

use std::collections::HashMap;
use std::path::Path;

/// Counters as the container sees them (cAdvisor's `container_network_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    pub receive_bytes: u64,
    pub receive_packets: u64,
    pub receive_errors: u64,
    pub receive_dropped: u64,
    pub transmit_bytes: u64,
    pub transmit_packets: u64,
    pub transmit_errors: u64,
    pub transmit_dropped: u64,
}

/// Every host link's counters from `/proc/net/dev` (one read for all tasks; a file per
/// counter in sysfs cost a scrape eight opens per interface), by link name.
pub fn read_all(proc_net_dev: &Path) -> HashMap<String, NetStats> {
    std::fs::read_to_string(proc_net_dev)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// `/proc/net/dev`: after `NAME:`, eight receive fields (bytes packets errs drop ...) and
/// eight transmit fields; what the host end receives, the container sent.
pub fn parse(text: &str) -> HashMap<String, NetStats> {
    text.lines()
        .filter_map(|line| {
            let (name, fields) = line.split_once(':')?;
            let v: Vec<u64> = fields
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            if v.len() < 16 {
                return None;
            }
            let stats = NetStats {
                receive_bytes: v[8],
                receive_packets: v[9],
                receive_errors: v[10],
                receive_dropped: v[11],
                transmit_bytes: v[0],
                transmit_packets: v[1],
                transmit_errors: v[2],
                transmit_dropped: v[3],
            };
            Some((name.trim().to_string(), stats))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_end_counters_are_swapped_into_the_containers_view() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  bvx0:     100       2    0    1    0     0          0         0      900       9    3    0    0     0       0          0
";
        let all = parse(text);
        let n = all["bvx0"];
        assert_eq!((n.receive_bytes, n.transmit_bytes), (900, 100));
        assert_eq!((n.receive_errors, n.transmit_dropped), (3, 1));
        assert_eq!((n.receive_packets, n.transmit_packets), (9, 2));
        assert!(all.contains_key("lo") && !all.contains_key("gone") && all.len() == 2);
    }
}
