//! Links, addresses and routes over rtnetlink: berth's bridge, each task's veth pair, and the
//! inside of a task's namespace. rtnetlink is async; each call here runs it on a thread of its
//! own (so it can also enter another network namespace first, see `netns.rs`).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::addresses::Subnet;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: cannot {action}: {source}")]
    Netlink {
        action: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no link {0}")]
    NoLink(String),
}

const EEXIST: i32 = -17;

fn nl(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let action = action.into();
    move |source| LinkError::Netlink { action, source }
}

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == EEXIST)
}

/// Runs `f` with a fresh rtnetlink connection on a thread of its own; `enter` runs first on
/// that thread (to join a network namespace: the socket then belongs to it).
pub fn with_netlink<T, F, Fut>(
    enter: impl FnOnce() -> Result<(), LinkError> + Send,
    f: F,
) -> Result<T, LinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, LinkError>>,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            enter()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|source| LinkError::Io {
                    action: "start a netlink runtime".into(),
                    source,
                })?;
            rt.block_on(async {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|source| LinkError::Io {
                        action: "open a netlink socket".into(),
                        source,
                    })?;
                let driver = tokio::spawn(conn);
                let out = f(handle).await;
                driver.abort();
                out
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(LinkError::Io {
                action: "configure the network".into(),
                source: std::io::Error::other("the netlink thread panicked"),
            })
        })
    })
}

pub fn on_host<T, F, Fut>(f: F) -> Result<T, LinkError>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, LinkError>>,
{
    with_netlink(|| Ok(()), f)
}

/// The name of link number `idx`, if it exists.
pub async fn name_of(h: &Handle, idx: u32) -> Result<Option<String>, LinkError> {
    let mut links = h.link().get().match_index(idx).execute();
    match links.try_next().await {
        Ok(m) => Ok(m.as_ref().and_then(link_name).map(String::from)),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl(format!("look up link #{idx}"))(e)),
    }
}

fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The index of link `name`, if it exists.
pub async fn index(h: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = h.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(m) => Ok(m.map(|m| m.header.index)),
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -19 => Ok(None),
        Err(e) => Err(nl(format!("look up link {name}"))(e)),
    }
}

async fn require(h: &Handle, name: &str) -> Result<u32, LinkError> {
    index(h, name)
        .await?
        .ok_or_else(|| LinkError::NoLink(name.to_string()))
}

/// Every link's name.
pub async fn names(h: &Handle) -> Result<Vec<String>, LinkError> {
    let mut out = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(m) = links.try_next().await.map_err(nl("list links"))? {
        out.extend(link_name(&m).map(String::from));
    }
    Ok(out)
}

async fn add_address(h: &Handle, idx: u32, a: Ipv4Addr, prefix: u8) -> Result<(), LinkError> {
    match h.address().add(idx, IpAddr::V4(a), prefix).execute().await {
        Err(e) if !exists(&e) => Err(nl(format!("add address {a}/{prefix}"))(e)),
        _ => Ok(()),
    }
}

async fn up(h: &Handle, idx: u32) -> Result<(), LinkError> {
    h.link()
        .change(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(nl("set a link up"))
}

/// berth's bridge with the subnet's gateway address, up; made if absent.
pub async fn ensure_bridge(h: &Handle, name: &str, subnet: Subnet) -> Result<(), LinkError> {
    if index(h, name).await?.is_none() {
        match h.link().add(LinkBridge::new(name).build()).execute().await {
            Err(e) if !exists(&e) => return Err(nl(format!("create bridge {name}"))(e)),
            _ => {}
        }
    }
    let idx = require(h, name).await?;
    add_address(h, idx, subnet.gateway(), subnet.prefix).await?;
    up(h, idx).await
}

/// IPv4 routes of the main table as (destination, output link index).
pub async fn routes(h: &Handle) -> Result<Vec<(Subnet, Option<u32>)>, LinkError> {
    let mut out = Vec::new();
    let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = h.route().get(query).execute();
    while let Some(r) = routes.try_next().await.map_err(nl("list routes"))? {
        if r.header.address_family != AddressFamily::Inet || r.header.table != 254 {
            continue;
        }
        let dest = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let prefix = r.header.destination_prefix_length;
        // The default route (0/0) says nothing about a clash.
        if let (Some(d), true) = (dest, prefix >= 8) {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let network = Ipv4Addr::from(u32::from(d) & mask);
            out.push((Subnet { network, prefix }, oif));
        }
    }
    Ok(out)
}

/// A veth pair: `host` on the bridge, up; `peer` moved into the namespace open as `netns`.
pub async fn add_veth(
    h: &Handle,
    host: &str,
    peer: &str,
    bridge: &str,
    netns: &std::fs::File,
) -> Result<(), LinkError> {
    h.link()
        .add(LinkVeth::new(host, peer).build())
        .execute()
        .await
        .map_err(nl(format!("create veth pair {host}")))?;
    let bridge_idx = require(h, bridge).await?;
    let host_idx = require(h, host).await?;
    h.link()
        .change(
            LinkUnspec::new_with_index(host_idx)
                .controller(bridge_idx)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("attach {host} to {bridge}")))?;
    let peer_idx = require(h, peer).await?;
    h.link()
        .change(
            LinkUnspec::new_with_index(peer_idx)
                .setns_by_fd(netns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("move {peer} into the task's namespace")))
}

/// Inside a task's namespace: `peer` renamed `eth0` with `address`, up, `lo` up, and the
/// default route through the bridge.
pub async fn configure_inside(
    h: &Handle,
    peer: &str,
    address: Ipv4Addr,
    subnet: Subnet,
) -> Result<(), LinkError> {
    let idx = require(h, peer).await?;
    h.link()
        .change(LinkUnspec::new_with_index(idx).name("eth0").build())
        .execute()
        .await
        .map_err(nl("rename the task's interface eth0"))?;
    add_address(h, idx, address, subnet.prefix).await?;
    up(h, idx).await?;
    let lo = require(h, "lo").await?;
    up(h, lo).await?;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(subnet.gateway())
        .build();
    match h.route().add(route).execute().await {
        Err(e) if !exists(&e) => Err(nl("add the default route")(e)),
        _ => Ok(()),
    }
}

/// Deletes link `name` if it exists.
pub async fn delete(h: &Handle, name: &str) -> Result<(), LinkError> {
    match index(h, name).await? {
        Some(idx) => match h.link().del(idx).execute().await {
            // Gone meanwhile (its namespace went, taking the pair).
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -19 => Ok(()),
            r => r.map_err(nl(format!("delete link {name}"))),
        },
        None => Ok(()),
    }
}
