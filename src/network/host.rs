//! The host side of task networking: berth's bridge and nftables table made at start, and
//! each task's namespaces, veth pairs and rules made with it and taken away with it. Every
//! piece is named from the task id, so what a crash left behind is found and cleared without
//! any record of it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::addresses::Subnet;
use super::links::{self, LinkError};
use super::netns::{self, NetnsError};
use super::nft::{Nft, NftError};
use super::{rules, Interface, TaskNetwork};

#[derive(Debug, Clone)]
pub struct NetworkConfig {
    pub bridge: String,
    pub subnet: Subnet,
    /// Where the namespaces' files live (`<runtime_dir>/netns`).
    pub netns_dir: PathBuf,
    pub nft: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("bridge_subnet {subnet} overlaps the host's route to {route} on link {link}; choose a free bridge_subnet in berthd.toml")]
    Clash {
        subnet: Subnet,
        route: Subnet,
        link: String,
    },
    #[error("cannot write {path} (needed to forward the tasks' traffic): {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct Networks {
    config: NetworkConfig,
    nft: Nft,
}

fn sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    std::fs::write(path, value).map_err(|source| NetworkError::Sysctl {
        path: PathBuf::from(path),
        source,
    })
}

impl Networks {
    /// Makes (or finds, after a restart) the bridge and berth's table. Refuses a subnet that
    /// overlaps a route of the host's on another link.
    pub fn start(config: NetworkConfig) -> Result<Networks, NetworkError> {
        let (bridge, subnet) = (config.bridge.clone(), config.subnet);
        let clash = links::on_host(|h| async move {
            let ours = links::index(&h, &bridge).await?;
            for (route, oif) in links::routes(&h).await? {
                if let Some(oif) = oif.filter(|o| route.overlaps(&subnet) && Some(*o) != ours) {
                    let link = links::name_of(&h, oif).await?.unwrap_or(format!("#{oif}"));
                    return Ok(Some((route, link)));
                }
            }
            links::ensure_bridge(&h, &bridge, subnet).await?;
            Ok(None)
        })?;
        if let Some((route, link)) = clash {
            return Err(NetworkError::Clash {
                subnet,
                route,
                link,
            });
        }
        sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", config.bridge),
            "1",
        )?;
        let nft = Nft::new(&config.nft);
        nft.apply("table", &rules::setup(&config.bridge, subnet))?;
        std::fs::create_dir_all(&config.netns_dir).map_err(|source| NetnsError::Sys {
            action: "create the directory of",
            path: config.netns_dir.clone(),
            source,
        })?;
        Ok(Networks { config, nft })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The file a container's (or awsvpc task's) network namespace is held at.
    pub fn netns_path(&self, iface: &Interface) -> PathBuf {
        self.config.netns_dir.join(&iface.netns)
    }

    /// Makes the task's namespaces, links and rules. On error what was made stays for
    /// [`Networks::detach`], which the engine's release of a failed task calls.
    pub fn attach(&self, task_id: &str, net: &TaskNetwork) -> Result<(), NetworkError> {
        for iface in &net.interfaces {
            self.attach_one(iface)?;
        }
        let forwards = net.forwards();
        if !forwards.is_empty() {
            self.nft
                .apply("port forwards", &rules::publish(task_id, &forwards))?;
        }
        Ok(())
    }

    fn attach_one(&self, iface: &Interface) -> Result<(), NetworkError> {
        let path = self.netns_path(iface);
        netns::create(&path)?;
        let ns = std::fs::File::open(&path).map_err(|source| NetnsError::Sys {
            action: "open",
            path: path.clone(),
            source,
        })?;
        // The peer's name in the host namespace only until it moves: unique like the host end.
        let peer = format!("{}p", iface.host_link.get(..14).unwrap_or(&iface.host_link));
        let (host, bridge) = (iface.host_link.clone(), self.config.bridge.clone());
        let p = peer.clone();
        links::on_host(|h| async move { links::add_veth(&h, &host, &p, &bridge, &ns).await })?;
        let (address, subnet) = (iface.address, self.config.subnet);
        links::with_netlink(
            || {
                netns::enter(&path).map_err(|e| LinkError::Io {
                    action: "enter the task's namespace".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            },
            |h| async move { links::configure_inside(&h, &peer, address, subnet).await },
        )?;
        Ok(())
    }

    /// Takes away everything of the task's network; what is already gone is fine. A task
    /// with no namespace left has nothing else either (namespaces are made first and removed
    /// last), so a `host` or `none` task costs no nft or netlink call.
    pub fn detach(&self, task_id: &str) {
        let mine = |name: &String| name.split_once('-').map(|(t, _)| t) == Some(task_id);
        let spaces: Vec<String> = netns::list(&self.config.netns_dir)
            .into_iter()
            .filter(mine)
            .collect();
        if spaces.is_empty() {
            return;
        }
        self.unpublish(|t| t == task_id);
        self.remove_links(|t| task_id.starts_with(t));
        for name in spaces {
            self.remove_netns(&name);
        }
    }

    /// Clears the networks of tasks not in `live` (left by a crash, or by a task that
    /// stopped while berthd was down).
    pub fn sweep(&self, live: &BTreeSet<String>) {
        self.unpublish(|t| !live.contains(t));
        self.remove_links(|prefix| !live.iter().any(|id| id.starts_with(prefix)));
        for name in netns::list(&self.config.netns_dir) {
            let task = name.split_once('-').map(|(t, _)| t).unwrap_or(&name);
            if !live.contains(task) {
                tracing::warn!(netns = %name, "removing the network namespace of a task berth does not run");
                self.remove_netns(&name);
            }
        }
    }

    fn remove_netns(&self, name: &str) {
        if let Err(e) = netns::remove(&self.config.netns_dir.join(name)) {
            tracing::warn!(error = %e, "network namespace not removed");
        }
    }

    fn unpublish(&self, gone: impl Fn(&str) -> bool) {
        let deleted =
            self.nft
                .list_published()
                .and_then(|listing| match rules::unpublish(&listing, gone) {
                    Some(doc) => self.nft.apply("rule deletions", &doc),
                    None => Ok(()),
                });
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "port forwards not removed");
        }
    }

    /// Deletes host veth ends `bv<task id prefix><n>` whose prefix `gone` picks.
    fn remove_links(&self, gone: impl Fn(&str) -> bool + Send) {
        let removed = links::on_host(|h| async move {
            for name in links::names(&h).await? {
                let Some(rest) = name.strip_prefix("bv") else {
                    continue;
                };
                if rest.len() > 10 && gone(&rest[..10]) {
                    links::delete(&h, &name).await?;
                }
            }
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(error = %e, "task links not removed");
        }
    }
}
