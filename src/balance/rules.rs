//! The load balancer's nftables chains in berth's table, as nft JSON documents. Pure.
//!
//! Chain `services` (jumped to from the nat hooks for traffic to the host's own addresses,
//! see `network/rules.rs`) holds one rule per listener: `tcp dport P goto lb-SERVICE.I`. That
//! dispatch chain picks a target as kube-proxy's nftables mode does, `numgen random mod N vmap`,
//! and each target's chain `lb-SERVICE.I.TASK` counts the new connection and DNATs it to the
//! task's address. The kernel does all of it; established connections follow conntrack, so a
//! target taken out of the map keeps the connections it has.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Target;
use crate::network::rules::TABLE;

/// The regular chain holding every listener's rule.
pub const SERVICES: &str = "services";
const FAMILY: &str = "ip";
/// Every chain of the balancer's starts so.
const PREFIX: &str = "lb-";
const TAG: &str = "berth-service:";
/// nft takes chain names up to 256 bytes; the longest service name (255) is cut and hashed.
const MAX_KEY: usize = 200;

/// One listener of a service and the targets that take its new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub service: String,
    pub index: usize,
    pub listen: SocketAddrV4,
    pub targets: Vec<Target>,
}

impl Listener {
    pub fn dispatch_chain(&self) -> String {
        dispatch_chain(&self.service, self.index)
    }

    pub fn target_chain(&self, task_id: &str) -> String {
        target_chain(&self.service, self.index, task_id)
    }

    fn chains(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.dispatch_chain())
            .chain(self.targets.iter().map(|t| self.target_chain(&t.task_id)))
    }
}

/// The chain choosing among the targets of `service`'s listener number `index`.
pub fn dispatch_chain(service: &str, index: usize) -> String {
    format!("{PREFIX}{}.{index}", key(service))
}

/// The chain sending that listener's connections to `task_id` (and counting them).
pub fn target_chain(service: &str, index: usize, task_id: &str) -> String {
    format!("{}.{task_id}", dispatch_chain(service, index))
}

fn key(service: &str) -> String {
    if service.len() <= MAX_KEY {
        return service.to_string();
    }
    let hash = Sha256::digest(service.as_bytes());
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    // Service names are ASCII (checked at create), so any byte is a char boundary.
    format!("{}~{hex}", &service[..MAX_KEY - 10])
}

fn chain_ref(name: &str) -> Value {
    json!({"family": FAMILY, "table": TABLE, "name": name})
}

fn add_rule(chain: &str, expr: Vec<Value>, comment: Option<String>) -> Value {
    let mut r = json!({"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr});
    if let Some(c) = comment {
        r["comment"] = c.into();
    }
    json!({"add": {"rule": r}})
}

fn matches(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn listener_rule(l: &Listener) -> Value {
    let mut expr = Vec::new();
    if *l.listen.ip() != Ipv4Addr::UNSPECIFIED {
        expr.push(matches(
            json!({"payload": {"protocol": "ip", "field": "daddr"}}),
            json!(l.listen.ip().to_string()),
        ));
    }
    expr.push(matches(
        json!({"payload": {"protocol": "tcp", "field": "dport"}}),
        json!(l.listen.port()),
    ));
    expr.push(json!({"goto": {"target": l.dispatch_chain()}}));
    add_rule(SERVICES, expr, Some(format!("{TAG}{}", l.service)))
}

fn dispatch_rule(l: &Listener) -> Option<Value> {
    if l.targets.is_empty() {
        // No rule: the connection reaches the host's own port, where nothing listens (the
        // books keep it), and is refused at once rather than left hanging.
        return None;
    }
    let set: Vec<Value> = l
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| json!([i, {"goto": {"target": l.target_chain(&t.task_id)}}]))
        .collect();
    Some(add_rule(
        &l.dispatch_chain(),
        vec![json!({"vmap": {
            "key": {"numgen": {"mode": "random", "mod": l.targets.len(), "offset": 0}},
            "data": {"set": set},
        }})],
        None,
    ))
}

fn target_rule(chain: &str, t: &Target) -> Value {
    add_rule(
        chain,
        vec![
            matches(json!({"meta": {"key": "l4proto"}}), json!("tcp")),
            json!({"counter": null}),
            json!({"dnat": {"addr": t.address.to_string(), "port": t.port}}),
        ],
        None,
    )
}

fn listen_key(ls: &[Listener]) -> Vec<(&str, usize, SocketAddrV4)> {
    ls.iter()
        .map(|l| (l.service.as_str(), l.index, l.listen))
        .collect()
}

/// The one transaction taking the kernel from `applied` to `desired`; `None` when they are the
/// same. `existing`: the balancer's chains the kernel held when berthd started (`Some` on the
/// first sync only): rules found there are re-adopted as they are, so a restart of berthd
/// changes nothing a connection could notice.
pub fn sync(
    applied: &[Listener],
    desired: &[Listener],
    existing: Option<&BTreeSet<String>>,
) -> Option<Value> {
    let mut known: BTreeSet<String> = applied.iter().flat_map(|l| l.chains()).collect();
    if let Some(e) = existing {
        known.extend(e.iter().cloned());
    }
    let wanted: BTreeSet<String> = desired.iter().flat_map(|l| l.chains()).collect();
    let before: BTreeMap<(&str, usize), &Listener> = applied
        .iter()
        .map(|l| ((l.service.as_str(), l.index), l))
        .collect();
    let mut ops = Vec::new();
    for l in desired {
        for t in &l.targets {
            let chain = l.target_chain(&t.task_id);
            if !known.contains(&chain) {
                ops.push(json!({"add": {"chain": chain_ref(&chain)}}));
                ops.push(target_rule(&chain, t));
            }
        }
        let same = before
            .get(&(l.service.as_str(), l.index))
            .is_some_and(|b| b.targets == l.targets);
        if existing.is_some() || !same {
            let chain = l.dispatch_chain();
            ops.push(json!({"add": {"chain": chain_ref(&chain)}}));
            ops.push(json!({"flush": {"chain": chain_ref(&chain)}}));
            ops.extend(dispatch_rule(l));
        }
    }
    if existing.is_some() || listen_key(applied) != listen_key(desired) {
        ops.push(json!({"flush": {"chain": chain_ref(SERVICES)}}));
        ops.extend(desired.iter().map(listener_rule));
    }
    // Nothing refers to a stale chain once the maps and listeners above are rewritten; all
    // are flushed before any is deleted, as a dispatch chain refers to its targets' chains.
    let stale: Vec<&String> = known.difference(&wanted).collect();
    ops.extend(
        stale
            .iter()
            .map(|c| json!({"flush": {"chain": chain_ref(c)}})),
    );
    ops.extend(
        stale
            .iter()
            .map(|c| json!({"delete": {"chain": chain_ref(c)}})),
    );
    (!ops.is_empty()).then(|| json!({ "nftables": ops }))
}

/// The balancer's chains in a listing of berth's table.
pub fn chains_in(listing: &Value) -> BTreeSet<String> {
    objects(listing, "chain")
        .filter_map(|c| c.get("name")?.as_str())
        .filter(|n| n.starts_with(PREFIX))
        .map(String::from)
        .collect()
}

/// New connections counted so far, by target chain.
pub fn counters_in(listing: &Value) -> BTreeMap<String, u64> {
    objects(listing, "rule")
        .filter_map(|r| {
            let chain = r.get("chain")?.as_str()?;
            if !chain.starts_with(PREFIX) {
                return None;
            }
            let packets = r
                .get("expr")?
                .as_array()?
                .iter()
                .find_map(|e| e.get("counter")?.get("packets")?.as_u64())?;
            Some((chain.to_string(), packets))
        })
        .collect()
}

fn objects<'a>(listing: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    listing
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(move |o| o.get(kind))
}

#[cfg(test)]
mod tests;
