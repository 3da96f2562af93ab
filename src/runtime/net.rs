//! A container's network files and namespace path, from its task's network: `/etc/hosts`
//! (own name, `links`, `extraHosts`) and `/etc/resolv.conf` (the host's reachable servers or
//! the definition's own) written beside its bundle.

use std::path::Path;

use super::bundle::{self, Provided, TaskContext};
use super::LaunchError;
use crate::fsutil::write_atomic;
use crate::network::files::{self, HostEntry, Resolvers};
use crate::network::{Networks, TaskNetwork};
use crate::spec::{ContainerDefinition, NetworkMode, TaskDefinition};

/// The host's resolvers as containers can reach them.
pub fn host_resolvers() -> Resolvers {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    files::host_resolvers(
        &read("/etc/resolv.conf").unwrap_or_default(),
        read("/run/systemd/resolve/resolv.conf").as_deref(),
    )
}

fn entries(def: &TaskDefinition, c: &ContainerDefinition, net: &TaskNetwork) -> Vec<HostEntry> {
    let mut out: Vec<HostEntry> = Vec::new();
    if def.network_mode == NetworkMode::Bridge {
        for (target, alias) in &c.links {
            if let Some(i) = net.interface_of(target) {
                let mut names = vec![alias.clone()];
                if alias != target {
                    names.push(target.clone());
                }
                out.push((i.address.to_string(), names));
            }
        }
    }
    out.extend(
        c.extra_hosts
            .iter()
            .map(|(h, a)| (a.clone(), vec![h.clone()])),
    );
    out
}

/// Writes the container's files into `cdir` and says what its bundle joins and mounts.
pub fn prepare(
    networks: Option<&Networks>,
    ctx: &TaskContext,
    def: &TaskDefinition,
    c: &ContainerDefinition,
    net: &TaskNetwork,
    resolvers: &Resolvers,
    cdir: &Path,
) -> Result<Provided, LaunchError> {
    // disableNetworking: a namespace of its own with nothing but loopback.
    let Some(iface) = net
        .interface_of(&c.name)
        .filter(|_| !c.sandbox.disable_networking)
    else {
        return Ok(Provided::default());
    };
    let networks = networks.ok_or_else(|| LaunchError::Io {
        action: "join the bridge for",
        path: cdir.to_owned(),
        source: std::io::Error::other("berthd has no bridge"),
    })?;
    let hostname = bundle::hostname(ctx, c);
    let address = iface.address.to_string();
    let hosts = files::hosts(Some((&address, &hostname)), &entries(def, c, net));
    let resolv = resolvers.render(&c.dns_servers, &c.dns_search_domains);
    let (hosts_path, resolv_path) = (cdir.join("hosts"), cdir.join("resolv.conf"));
    for (path, text) in [(&hosts_path, hosts), (&resolv_path, resolv)] {
        write_atomic(path, text.as_bytes()).map_err(|source| LaunchError::Io {
            action: "write",
            path: path.clone(),
            source,
        })?;
    }
    Ok(Provided {
        netns: Some(networks.netns_path(iface)),
        hosts: Some(hosts_path),
        resolv_conf: Some(resolv_path),
        ..Provided::default()
    })
}
