//! Network series of bridge and awsvpc tasks, cAdvisor's `container_network_*` under berth's
//! prefix: per task (all its interfaces) and, in bridge mode, per container (its own).

use std::collections::HashMap;
use std::path::Path;

use super::tasks::Families;
use crate::engine::Task;
use crate::network::stats::{self, NetStats};

const PROC_NET_DEV: &str = "/proc/net/dev";

type Series = (&'static str, &'static str, fn(&NetStats) -> u64);

const SERIES: [Series; 8] = [
    ("receive_bytes_total", "Bytes received.", |s| {
        s.receive_bytes
    }),
    ("receive_packets_total", "Packets received.", |s| {
        s.receive_packets
    }),
    ("receive_errors_total", "Errors while receiving.", |s| {
        s.receive_errors
    }),
    (
        "receive_packets_dropped_total",
        "Packets dropped while receiving.",
        |s| s.receive_dropped,
    ),
    ("transmit_bytes_total", "Bytes transmitted.", |s| {
        s.transmit_bytes
    }),
    ("transmit_packets_total", "Packets transmitted.", |s| {
        s.transmit_packets
    }),
    ("transmit_errors_total", "Errors while transmitting.", |s| {
        s.transmit_errors
    }),
    (
        "transmit_packets_dropped_total",
        "Packets dropped while transmitting.",
        |s| s.transmit_dropped,
    ),
];

fn add(f: &mut Families, prefix: &str, labels: &[(&str, &str)], s: &NetStats) {
    let mut l = labels.to_vec();
    l.push(("interface", "eth0"));
    for (suffix, help, get) in SERIES {
        f.counter(
            &format!("{prefix}_network_{suffix}"),
            help,
            &l,
            get(s) as f64,
        );
    }
}

fn sum(a: NetStats, b: NetStats) -> NetStats {
    NetStats {
        receive_bytes: a.receive_bytes + b.receive_bytes,
        receive_packets: a.receive_packets + b.receive_packets,
        receive_errors: a.receive_errors + b.receive_errors,
        receive_dropped: a.receive_dropped + b.receive_dropped,
        transmit_bytes: a.transmit_bytes + b.transmit_bytes,
        transmit_packets: a.transmit_packets + b.transmit_packets,
        transmit_errors: a.transmit_errors + b.transmit_errors,
        transmit_dropped: a.transmit_dropped + b.transmit_dropped,
    }
}

/// Adds the task's network series from `links` (every host link's counters, read once per
/// scrape).
pub fn add_task(
    f: &mut Families,
    t: &Task,
    task_labels: &[(&str, &str)],
    links: &HashMap<String, NetStats>,
) {
    let mut total: Option<NetStats> = None;
    for iface in &t.network.interfaces {
        let Some(s) = links.get(&iface.host_link).copied() else {
            continue;
        };
        if let Some(c) = &iface.container {
            let mut l = task_labels.to_vec();
            l.push(("container", c.as_str()));
            add(f, "berth_container", &l, &s);
        }
        total = Some(total.map_or(s, |t| sum(t, s)));
    }
    if let Some(s) = total {
        add(f, "berth_task", task_labels, &s);
    }
}

/// The host's links' counters, for [`add_task`].
pub fn host_links() -> HashMap<String, NetStats> {
    stats::read_all(Path::new(PROC_NET_DEV))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Interface, TaskNetwork};

    #[test]
    fn bridge_containers_and_their_task_get_network_series() {
        // The links' counters in the container's view (network::stats swaps the host end's).
        let links: HashMap<String, NetStats> = [("bva0", 10), ("bva1", 32)]
            .into_iter()
            .map(|(link, tx)| {
                (
                    link.to_string(),
                    NetStats {
                        transmit_bytes: tx,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let def = crate::spec::parse(
            r#"{"family":"f","containerDefinitions":[
            {"name":"a","image":"b","memory":32},{"name":"b","image":"b","memory":32}]}"#,
        )
        .unwrap()
        .definition;
        let mut t = Task::new("a".into(), "f:1".into(), &def, 0);
        t.network = TaskNetwork {
            interfaces: ["a", "b"]
                .iter()
                .enumerate()
                .map(|(i, c)| Interface {
                    container: Some(c.to_string()),
                    address: std::net::Ipv4Addr::new(10, 0, 0, 2 + i as u8),
                    host_link: format!("bva{i}"),
                    netns: format!("a-{i}"),
                })
                .collect(),
            bindings: vec![],
        };
        let mut f = Families::default();
        add_task(&mut f, &t, &[("task_id", "a")], &links);
        let text = f.text();
        assert!(text.contains(r#"berth_container_network_transmit_bytes_total{task_id="a",container="b",interface="eth0"} 32"#), "{text}");
        assert!(
            text.contains(
                r#"berth_task_network_transmit_bytes_total{task_id="a",interface="eth0"} 42"#
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE berth_task_network_receive_packets_dropped_total counter"),
            "{text}"
        );
    }
}
