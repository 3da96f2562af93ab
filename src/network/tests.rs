use std::net::Ipv4Addr;

use super::*;

fn def(json: &str) -> TaskDefinition {
    crate::spec::parse(json).unwrap().definition
}

const TWO: &str = r#"{"family":"f","containerDefinitions":[
    {"name":"web","image":"busybox","memory":32,"portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":81}]},
    {"name":"side","image":"busybox","memory":32,"portMappings":[{"containerPort":53,"protocol":"udp"}]}]}"#;

#[test]
fn bridge_gives_each_container_an_address_and_dynamic_ports_in_order() {
    let d = def(TWO);
    assert_eq!(addresses_needed(&d), 2);
    assert_eq!(dynamic_ports_needed(&d), [Protocol::Tcp, Protocol::Udp]);
    let a = [Ipv4Addr::new(172, 29, 0, 2), Ipv4Addr::new(172, 29, 0, 3)];
    let n = assign(&d, "0123456789abcdef", &a, &[49153, 49154]);
    assert_eq!(n.interfaces[1].container.as_deref(), Some("side"));
    assert_eq!(n.interfaces[1].host_link, "bv01234567891");
    assert!(n.interfaces[1].host_link.len() <= 15);
    let ports: Vec<_> = n
        .bindings
        .iter()
        .map(|b| (b.container_port, b.host_port))
        .collect();
    assert_eq!(ports, [(80, 8080), (81, 49153), (53, 49154)]);
    let f = n.forwards();
    assert_eq!(f[2].address, a[1]);
    assert_eq!(f[2].protocol, Protocol::Udp);
}

#[test]
fn awsvpc_is_one_task_interface_publishing_only_given_host_ports() {
    let d = def(
        r#"{"family":"f","networkMode":"awsvpc","containerDefinitions":[
        {"name":"a","image":"busybox","memory":32,"portMappings":[{"containerPort":80,"hostPort":80},{"containerPort":90}]},
        {"name":"b","image":"busybox","memory":32}]}"#,
    );
    assert_eq!(addresses_needed(&d), 1);
    assert!(dynamic_ports_needed(&d).is_empty());
    let a = [Ipv4Addr::new(172, 29, 0, 9)];
    let n = assign(&d, "abc", &a, &[]);
    assert_eq!(n.interfaces.len(), 1);
    assert_eq!(n.interfaces[0].container, None);
    assert_eq!(n.interface_of("b").map(|i| i.address), Some(a[0]));
    assert_eq!(n.bindings.len(), 1);
    assert_eq!(n.bindings[0].host_port, 80);
}

#[test]
fn host_and_none_need_nothing() {
    for mode in ["host", "none"] {
        let d = def(&format!(
            r#"{{"family":"f","networkMode":"{mode}","containerDefinitions":[
            {{"name":"a","image":"busybox","memory":32,"portMappings":[{{"containerPort":80}}]}}]}}"#
        ));
        assert_eq!(addresses_needed(&d), 0);
        assert!(dynamic_ports_needed(&d).is_empty());
    }
}

#[test]
fn bindings_serialize_as_ecs_network_bindings() {
    let n = assign(
        &def(TWO),
        "t",
        &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
        &[50000, 50001],
    );
    let j = serde_json::to_value(&n.bindings[0]).unwrap();
    assert_eq!(j["containerName"], "web");
    assert_eq!(j["hostPort"], 8080);
    assert_eq!(j["bindIP"], "0.0.0.0");
    assert_eq!(j["protocol"], "tcp");
}
