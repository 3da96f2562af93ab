//! Network counters of a task's interfaces, read from the host end of each veth pair in
//! sysfs (a file read per counter, never a process): what the host end receives, the
//! container sent, so the two directions are swapped into the container's view.

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

/// The counters of host link `host_link` under `sys_class_net` (`/sys/class/net`); `None`
/// when the link is gone.
pub fn read(sys_class_net: &Path, host_link: &str) -> Option<NetStats> {
    let dir = sys_class_net.join(host_link).join("statistics");
    let get = |f: &str| -> Option<u64> {
        std::fs::read_to_string(dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(NetStats {
        receive_bytes: get("tx_bytes")?,
        receive_packets: get("tx_packets")?,
        receive_errors: get("tx_errors")?,
        receive_dropped: get("tx_dropped")?,
        transmit_bytes: get("rx_bytes")?,
        transmit_packets: get("rx_packets")?,
        transmit_errors: get("rx_errors")?,
        transmit_dropped: get("rx_dropped")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_end_counters_are_swapped_into_the_containers_view() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("bvx0/statistics");
        std::fs::create_dir_all(&s).unwrap();
        for (f, v) in [
            ("rx_bytes", 100),
            ("rx_packets", 2),
            ("rx_errors", 0),
            ("rx_dropped", 1),
            ("tx_bytes", 900),
            ("tx_packets", 9),
            ("tx_errors", 3),
            ("tx_dropped", 0),
        ] {
            std::fs::write(s.join(f), format!("{v}\n")).unwrap();
        }
        let n = read(d.path(), "bvx0").unwrap();
        assert_eq!((n.receive_bytes, n.transmit_bytes), (900, 100));
        assert_eq!((n.receive_errors, n.transmit_dropped), (3, 1));
        assert_eq!(read(d.path(), "gone"), None);
    }
}
