//! berth's nftables table, as nft JSON documents: the fixed chains (made again, identical, at
//! every start), one rule per published port tagged with its task's id, and the deletions that
//! take a task's rules out. Pure; `nft.rs` hands the documents to nft. berth touches no table
//! but its own.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use super::addresses::Subnet;
use crate::spec::Protocol;

pub const TABLE: &str = "berth";
/// The regular chain holding every published port's DNAT rule.
pub const PUBLISH: &str = "publish";
const FAMILY: &str = "ip";
/// Every task rule's comment starts so, followed by the task id.
const TAG: &str = "berth-task:";

/// One host port forwarded to a task's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub protocol: Protocol,
    pub host_port: u16,
    pub address: Ipv4Addr,
    pub port: u16,
}

fn chain(name: &str, hook: Option<(&str, i32)>) -> Value {
    let mut c = json!({"family": FAMILY, "table": TABLE, "name": name});
    if let Some((hook, prio)) = hook {
        c["type"] = "nat".into();
        c["hook"] = hook.into();
        c["prio"] = prio.into();
        c["policy"] = "accept".into();
    }
    json!({"add": {"chain": c}})
}

fn filter_chain(name: &str, hook: &str) -> Value {
    json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
        "type": "filter", "hook": hook, "prio": 0, "policy": "accept"}}})
}

fn rule(chain: &str, expr: Vec<Value>, comment: Option<String>) -> Value {
    let mut r = json!({"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr});
    if let Some(c) = comment {
        r["comment"] = c.into();
    }
    json!({"add": {"rule": r}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn prefix(s: Subnet) -> Value {
    json!({"prefix": {"addr": s.network.to_string(), "len": s.prefix}})
}

fn flush(name: &str) -> Value {
    json!({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": name}}})
}

/// The table and its fixed chains. Published ports (chain `publish`) survive it, so a
/// restarted berthd re-adopts them as they are.
pub fn setup(bridge: &str, subnet: Subnet) -> Value {
    let masquerade = json!({"masquerade": null});
    let to_local = || {
        matches(
            "==",
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            json!("local"),
        )
    };
    let jump = json!({"jump": {"target": PUBLISH}});
    let balance = json!({"jump": {"target": crate::balance::rules::SERVICES}});
    let from_bridge = || matches("==", meta("iifname"), json!(bridge));
    let to_loopback = || {
        matches(
            "==",
            payload("ip", "daddr"),
            json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
        )
    };
    json!({"nftables": [
        {"add": {"table": {"family": FAMILY, "name": TABLE}}},
        chain(PUBLISH, None),
        // Load-balancer listeners (balance/rules.rs): kept through a restart, as PUBLISH is.
        chain(crate::balance::rules::SERVICES, None),
        // dstnat (-100): traffic to any of the host's addresses, from outside or from the host.
        chain("prerouting", Some(("prerouting", -100))),
        chain("output", Some(("output", -100))),
        chain("postrouting", Some(("postrouting", 100))),
        filter_chain("input", "input"),
        flush("prerouting"), flush("output"), flush("postrouting"), flush("input"),
        rule("prerouting", vec![to_local(), balance.clone()], None),
        rule("output", vec![to_local(), balance], None),
        rule("prerouting", vec![to_local(), jump.clone()], None),
        rule("output", vec![to_local(), jump], None),
        // Leaving the host: the tasks' addresses are private to it.
        rule("postrouting", vec![
            matches("==", payload("ip", "saddr"), prefix(subnet)),
            matches("!=", payload("ip", "daddr"), prefix(subnet)),
            masquerade.clone(),
        ], None),
        // localhost:PORT forwarded onto the bridge (needs route_localnet on it).
        rule("postrouting", vec![
            matches("==", meta("oifname"), json!(bridge)),
            matches("==", payload("ip", "saddr"), json!({"prefix": {"addr": "127.0.0.0", "len": 8}})),
            masquerade.clone(),
        ], None),
        // route_localnet lets the bridge carry localhost:PORT to a task, and so would let a
        // task reach what the host serves on 127.0.0.1 alone (CVE-2020-8558's hole): from the
        // bridge, only the answers and the forwards berth made get to 127.0.0.0/8.
        rule("input", vec![from_bridge(), to_loopback(),
            matches("in", json!({"ct": {"key": "status"}}), json!("dnat")), json!({"accept": null})], None),
        rule("input", vec![from_bridge(), to_loopback(),
            matches("in", json!({"ct": {"key": "state"}}), json!(["established", "related"])), json!({"accept": null})], None),
        rule("input", vec![from_bridge(), to_loopback(), json!({"drop": null})], None),
        // A task reaching another's published port on the host: the answer must come back
        // through the host, not straight across the bridge.
        rule("postrouting", vec![
            matches("==", meta("iifname"), json!(bridge)),
            matches("==", meta("oifname"), json!(bridge)),
            matches("in", json!({"ct": {"key": "status"}}), json!("dnat")),
            masquerade,
        ], None),
    ]})
}

/// The rules publishing one task's ports, added in one transaction.
pub fn publish(task_id: &str, forwards: &[Forward]) -> Value {
    let rules: Vec<Value> = forwards
        .iter()
        .map(|f| {
            let proto = f.protocol.as_str();
            rule(
                PUBLISH,
                vec![
                    matches("==", payload(proto, "dport"), json!(f.host_port)),
                    json!({"dnat": {"addr": f.address.to_string(), "port": f.port}}),
                ],
                Some(format!("{TAG}{task_id}")),
            )
        })
        .collect();
    json!({ "nftables": rules })
}

/// The task whose rule this listed rule is, if it is one of berth's task rules.
fn task_of(rule: &Value) -> Option<&str> {
    rule.get("comment")?.as_str()?.strip_prefix(TAG)
}

/// Deletions of the task rules in `listing` (nft's JSON listing of the publish chain) whose
/// task `gone` says is gone; `None` when there is nothing to delete.
pub fn unpublish(listing: &Value, gone: impl Fn(&str) -> bool) -> Option<Value> {
    let deletes: Vec<Value> = listing
        .get("nftables")?
        .as_array()?
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| task_of(r).is_some_and(&gone))
        .filter_map(|r| {
            let handle = r.get("handle")?.as_u64()?;
            Some(json!({"delete": {"rule": {
                "family": FAMILY, "table": TABLE, "chain": PUBLISH, "handle": handle}}}))
        })
        .collect();
    (!deletes.is_empty()).then(|| json!({ "nftables": deletes }))
}

/// Task ids having rules in `listing`.
pub fn tasks_in(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> = listing
        .get("nftables")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|o| task_of(o.get("rule")?).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing() -> Value {
        json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"chain": {"family": "ip", "table": "berth", "name": "publish", "handle": 1}},
            {"rule": {"family": "ip", "table": "berth", "chain": "publish", "handle": 7,
                      "comment": "berth-task:aaa", "expr": []}},
            {"rule": {"family": "ip", "table": "berth", "chain": "publish", "handle": 8,
                      "comment": "berth-task:bbb", "expr": []}},
            {"rule": {"family": "ip", "table": "berth", "chain": "publish", "handle": 9,
                      "comment": "someone else's", "expr": []}},
        ]})
    }

    #[test]
    fn publish_tags_each_rule_with_the_task() {
        let doc = publish(
            "aaa",
            &[Forward {
                protocol: Protocol::Udp,
                host_port: 5353,
                address: Ipv4Addr::new(172, 29, 0, 2),
                port: 53,
            }],
        );
        let r = &doc["nftables"][0]["add"]["rule"];
        assert_eq!(r["comment"], "berth-task:aaa");
        assert_eq!(r["chain"], PUBLISH);
        assert_eq!(r["expr"][0]["match"]["left"]["payload"]["protocol"], "udp");
        assert_eq!(r["expr"][1]["dnat"]["addr"], "172.29.0.2");
        assert_eq!(r["expr"][1]["dnat"]["port"], 53);
    }

    #[test]
    fn unpublish_deletes_only_the_gone_tasks_rules_by_handle() {
        let doc = unpublish(&listing(), |t| t == "aaa").unwrap();
        let d = doc["nftables"].as_array().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["delete"]["rule"]["handle"], 7);
        assert!(unpublish(&listing(), |_| false).is_none());
        let all = unpublish(&listing(), |_| true).unwrap();
        assert_eq!(
            all["nftables"].as_array().unwrap().len(),
            2,
            "never another's rule"
        );
    }

    #[test]
    fn tasks_in_lists_each_task_once() {
        assert_eq!(tasks_in(&listing()), ["aaa", "bbb"]);
    }

    #[test]
    fn setup_keeps_published_rules_and_masquerades_the_subnet() {
        let doc = setup("berth0", "172.29.0.0/16".parse().unwrap());
        let text = doc.to_string();
        assert!(!text.contains(
            "\"flush\":{\"chain\":{\"family\":\"ip\",\"table\":\"berth\",\"name\":\"publish\""
        ));
        assert!(text.contains("\"masquerade\":null"), "{text}");
        assert!(text.contains("172.29.0.0"), "{text}");
    }

    #[test]
    fn from_the_bridge_loopback_takes_only_forwards_and_answers() {
        let doc = setup("berth0", "172.29.0.0/16".parse().unwrap());
        let input: Vec<&Value> = doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["add"]["rule"].as_object().map(|_| &x["add"]["rule"]))
            .filter(|r| r["chain"] == "input")
            .collect();
        assert_eq!(input.len(), 3);
        let last = input[2]["expr"].to_string();
        assert!(
            last.contains("\"drop\":null") && last.contains("127.0.0.0") && last.contains("berth0"),
            "{last}"
        );
        assert!(input[0]["expr"].to_string().contains("dnat"));
        let chain = doc["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["add"]["chain"]["name"] == "input")
            .unwrap();
        assert_eq!(chain["add"]["chain"]["type"], "filter");
        assert_eq!(chain["add"]["chain"]["hook"], "input");
    }
}
