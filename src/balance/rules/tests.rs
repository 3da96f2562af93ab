use super::*;

fn target(task: &str, last: u8) -> Target {
    Target {
        task_id: task.into(),
        address: Ipv4Addr::new(172, 29, 0, last),
        port: 80,
    }
}

fn web(targets: Vec<Target>) -> Listener {
    Listener {
        service: "web".into(),
        index: 0,
        listen: "0.0.0.0:8080".parse().unwrap(),
        targets,
    }
}

fn ops(doc: &Value) -> Vec<String> {
    doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let (verb, body) = o.as_object().unwrap().iter().next().unwrap();
            let (kind, x) = body.as_object().unwrap().iter().next().unwrap();
            let name = x.get("name").or_else(|| x.get("chain")).unwrap();
            format!("{verb} {kind} {}", name.as_str().unwrap())
        })
        .collect()
}

#[test]
fn a_new_listener_gets_target_chains_a_random_map_and_its_rule() {
    let doc = sync(&[], &[web(vec![target("a", 2), target("b", 3)])], None).unwrap();
    assert_eq!(
        ops(&doc),
        [
            "add chain lb-web.0.a",
            "add rule lb-web.0.a",
            "add chain lb-web.0.b",
            "add rule lb-web.0.b",
            "add chain lb-web.0",
            "flush chain lb-web.0",
            "add rule lb-web.0",
            "flush chain services",
            "add rule services",
        ]
    );
    let text = doc.to_string();
    assert!(text.contains(r#""mode":"random","mod":2"#), "{text}");
    assert!(
        text.contains(r#""dnat":{"addr":"172.29.0.3","port":80}"#),
        "{text}"
    );
    assert!(text.contains(r#""comment":"berth-service:web""#), "{text}");
    // 0.0.0.0 is every address of the host: no daddr match.
    assert!(!text.contains("daddr"), "{text}");
}

#[test]
fn a_target_leaving_rewrites_the_map_and_deletes_only_its_chain() {
    let before = [web(vec![target("a", 2), target("b", 3)])];
    let after = [web(vec![target("a", 2)])];
    let doc = sync(&before, &after, None).unwrap();
    assert_eq!(
        ops(&doc),
        [
            "add chain lb-web.0",
            "flush chain lb-web.0",
            "add rule lb-web.0",
            "flush chain lb-web.0.b",
            "delete chain lb-web.0.b",
        ],
        "a's chain, and its counter, stay; the listener is not touched"
    );
    assert!(
        sync(&after, &after, None).is_none(),
        "nothing changed, nothing sent"
    );
}

#[test]
fn no_target_leaves_the_dispatch_chain_empty() {
    let doc = sync(&[web(vec![target("a", 2)])], &[web(vec![])], None).unwrap();
    assert!(!ops(&doc).contains(&"add rule lb-web.0".to_string()));
}

#[test]
fn the_first_sync_keeps_existing_target_chains_and_drops_a_gone_services() {
    let existing: BTreeSet<String> = ["lb-web.0", "lb-web.0.a", "lb-old.0", "lb-old.0.z"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let doc = sync(&[], &[web(vec![target("a", 2)])], Some(&existing)).unwrap();
    let o = ops(&doc);
    assert!(!o.contains(&"add chain lb-web.0.a".to_string()), "{o:?}");
    assert!(o.contains(&"flush chain services".to_string()));
    let flush_old = o.iter().position(|x| x == "flush chain lb-old.0").unwrap();
    let delete_z = o
        .iter()
        .position(|x| x == "delete chain lb-old.0.z")
        .unwrap();
    assert!(flush_old < delete_z, "{o:?}");
    assert!(
        !o.iter().any(|x| x.starts_with("delete chain lb-web")),
        "{o:?}"
    );
}

#[test]
fn a_listener_on_one_address_matches_it_and_long_names_fit_nft() {
    let mut l = web(vec![target("a", 2)]);
    l.listen = "127.0.0.1:9000".parse().unwrap();
    let text = sync(&[], &[l.clone()], None).unwrap().to_string();
    assert!(text.contains(r#""right":"127.0.0.1""#), "{text}");
    l.service = "s".repeat(255);
    let chain = l.target_chain(&"f".repeat(32));
    assert!(chain.len() < 256, "{}", chain.len());
    let mut other = l.clone();
    other.service = format!("{}t", "s".repeat(254));
    assert_ne!(l.dispatch_chain(), other.dispatch_chain());
}

#[test]
fn listings_give_the_chains_and_their_counters() {
    let listing = serde_json::json!({"nftables": [
        {"chain": {"family": "ip", "table": "berth", "name": "publish"}},
        {"chain": {"family": "ip", "table": "berth", "name": "lb-web.0"}},
        {"chain": {"family": "ip", "table": "berth", "name": "lb-web.0.a"}},
        {"rule": {"chain": "lb-web.0.a", "expr": [
            {"match": {}}, {"counter": {"packets": 7, "bytes": 420}}, {"dnat": {}}]}},
        {"rule": {"chain": "publish", "expr": [{"counter": {"packets": 1, "bytes": 1}}]}},
    ]});
    assert_eq!(
        chains_in(&listing).into_iter().collect::<Vec<_>>(),
        ["lb-web.0", "lb-web.0.a"]
    );
    assert_eq!(counters_in(&listing).get("lb-web.0.a"), Some(&7));
    assert_eq!(counters_in(&listing).len(), 1);
}
