//! What a container finds in `/etc/resolv.conf` and `/etc/hosts`. Pure text in, text out:
//! the runtime writes the results beside the bundle and bind-mounts them.

use std::net::IpAddr;

/// The host's resolver configuration as a container can use it: a loopback nameserver (the
/// systemd-resolved stub 127.0.0.53, a local dnsmasq) cannot be reached from another network
/// namespace, so it is dropped; `upstream` (systemd-resolved's list of real servers) stands in
/// when it has any.
pub fn host_resolvers(resolv_conf: &str, upstream: Option<&str>) -> Resolvers {
    let own = Resolvers::parse(resolv_conf);
    let reachable = |r: &Resolvers| r.servers.iter().any(|s| !is_loopback(s));
    let mut chosen = match upstream.map(Resolvers::parse) {
        Some(up) if !reachable(&own) && reachable(&up) => Resolvers {
            search: own.search.clone(),
            options: own.options.clone(),
            ..up
        },
        _ => own,
    };
    chosen.servers.retain(|s| !is_loopback(s));
    chosen
}

fn is_loopback(s: &str) -> bool {
    s.parse::<IpAddr>().map(|a| a.is_loopback()).unwrap_or(true)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolvers {
    pub servers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Resolvers {
    pub fn parse(text: &str) -> Resolvers {
        let mut r = Resolvers::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => r.servers.extend(words.next().map(String::from)),
                Some("search") | Some("domain") => r.search = words.map(String::from).collect(),
                Some("options") => r.options.extend(words.map(String::from)),
                _ => {}
            }
        }
        r
    }

    /// The container's file: its own `dnsServers`/`dnsSearchDomains` replace the host's.
    pub fn render(&self, dns_servers: &[String], dns_search: &[String]) -> String {
        let servers = if dns_servers.is_empty() {
            &self.servers
        } else {
            &dns_servers.to_vec()
        };
        let search = if dns_search.is_empty() {
            &self.search
        } else {
            &dns_search.to_vec()
        };
        let mut out = String::from("# written by berth\n");
        for s in servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
        if !search.is_empty() {
            out.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// One line of `/etc/hosts`: an address and its names.
pub type HostEntry = (String, Vec<String>);

/// A container's `/etc/hosts`: localhost, its own address under its hostname, then `links`
/// and `extraHosts` in the order given.
pub fn hosts(own: Option<(&str, &str)>, entries: &[HostEntry]) -> String {
    let mut out = String::from(
        "# written by berth\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    if let Some((address, hostname)) = own {
        out.push_str(&format!("{address}\t{hostname}\n"));
    }
    for (address, names) in entries {
        out.push_str(&format!("{address}\t{}\n", names.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolved_stub_gives_way_to_its_upstream_servers() {
        let stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n";
        let up = "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\n";
        let r = host_resolvers(stub, Some(up));
        assert_eq!(r.servers, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(r.search, ["corp.example"]);
        assert_eq!(r.options, ["edns0", "trust-ad"]);
    }

    #[test]
    fn a_plain_resolv_conf_is_kept_and_loopback_servers_dropped() {
        let r = host_resolvers("nameserver 192.0.2.53\nnameserver 127.0.0.1\n", None);
        assert_eq!(r.servers, ["192.0.2.53"]);
        let r = host_resolvers("nameserver 127.0.0.1\n", None);
        assert!(r.servers.is_empty());
    }

    #[test]
    fn dns_fields_of_the_definition_replace_the_hosts_lists() {
        let r = Resolvers::parse("nameserver 192.0.2.53\nsearch a.example\n");
        let text = r.render(&["198.51.100.1".into()], &["b.example".into()]);
        assert!(text.contains("nameserver 198.51.100.1\n"), "{text}");
        assert!(!text.contains("192.0.2.53"), "{text}");
        assert!(text.contains("search b.example\n"), "{text}");
        let text = r.render(&[], &[]);
        assert!(
            text.contains("nameserver 192.0.2.53\nsearch a.example\n"),
            "{text}"
        );
    }

    #[test]
    fn hosts_has_localhost_own_name_links_and_extra_hosts() {
        let text = hosts(
            Some(("172.29.0.5", "web")),
            &[
                ("172.29.0.6".into(), vec!["db".into(), "database".into()]),
                ("192.0.2.9".into(), vec!["extra.example".into()]),
            ],
        );
        assert!(text.contains("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.contains("172.29.0.5\tweb\n"), "{text}");
        assert!(text.contains("172.29.0.6\tdb database\n"), "{text}");
        assert!(text.contains("192.0.2.9\textra.example\n"), "{text}");
    }
}
