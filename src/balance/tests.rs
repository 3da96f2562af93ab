use super::*;
use crate::network::{Interface, TaskNetwork};
use serde_json::json;

fn def(mode: &str) -> TaskDefinition {
    let json = format!(
        r#"{{"family":"web","networkMode":"{mode}","containerDefinitions":[{{"name":"web","image":"busybox","memory":32,
        "portMappings":[{{"containerPort":80}},{{"containerPort":53,"protocol":"udp"}}]}}]}}"#
    );
    crate::spec::parse(&json).unwrap().definition
}

#[test]
fn ecs_shape_reads_with_berths_defaults_and_refusals_name_the_field() {
    let lbs = parse(&json!([{"targetGroupArn": "arn:aws:elasticloadbalancing:x", "containerName": "web", "containerPort": 80}])).unwrap();
    assert_eq!(lbs[0].listen, "0.0.0.0:80".parse().unwrap());
    assert_eq!(lbs[0].deregistration_delay_seconds, 300);
    assert_eq!(
        lbs[0].target_group_arn.as_deref(),
        Some("arn:aws:elasticloadbalancing:x")
    );
    let lbs = parse(&json!([{"containerName": "web", "containerPort": 80, "listen": "127.0.0.1:9000", "deregistrationDelaySeconds": 5}])).unwrap();
    assert_eq!(lbs[0].listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(lbs[0].deregistration_delay_seconds, 5);
    for (bad, field) in [
        (
            json!([{"containerPort": 80}]),
            "loadBalancers[0].containerName",
        ),
        (
            json!([{"containerName": "web", "containerPort": 0}]),
            "loadBalancers[0].containerPort",
        ),
        (
            json!([{"containerName": "web", "containerPort": 70000}]),
            "loadBalancers[0].containerPort",
        ),
        (
            json!([{"containerName": "web", "containerPort": 80, "listen": "[::1]:80"}]),
            "loadBalancers[0].listen",
        ),
        (
            json!([{"containerName": "web", "containerPort": 80, "listen": "0.0.0.0:0"}]),
            "loadBalancers[0].listen",
        ),
        (
            json!([{"containerName": "web", "containerPort": 80, "deregistrationDelaySeconds": -1}]),
            "loadBalancers[0].deregistrationDelaySeconds",
        ),
        (
            json!([{"containerName": "web", "containerPort": 80}, {"containerName": "web", "containerPort": 80}]),
            "loadBalancers[1].listen",
        ),
        (json!({"containerName": "web"}), "loadBalancers:"),
    ] {
        let e = parse(&bad).unwrap_err();
        assert!(e.starts_with(field), "{bad}: {e}");
    }
}

#[test]
fn the_definition_must_have_the_container_its_tcp_port_and_an_address_per_task() {
    let lb = |c: &str, p: u16| parse(&json!([{"containerName": c, "containerPort": p}])).unwrap();
    assert!(check(&lb("web", 80), &def("bridge"), "web:1").is_ok());
    assert!(check(&lb("web", 80), &def("awsvpc"), "web:1").is_ok());
    let e = check(&lb("db", 80), &def("bridge"), "web:1").unwrap_err();
    assert!(
        e.starts_with("loadBalancers[0].containerName") && e.contains("\"db\""),
        "{e}"
    );
    let e = check(&lb("web", 81), &def("bridge"), "web:1").unwrap_err();
    assert!(
        e.starts_with("loadBalancers[0].containerPort") && e.contains("81"),
        "{e}"
    );
    let e = check(&lb("web", 53), &def("bridge"), "web:1").unwrap_err();
    assert!(e.contains("TCP port 53"), "udp is not balanced: {e}");
    let e = check(&lb("web", 80), &def("host"), "web:1").unwrap_err();
    assert!(e.contains("networkMode host"), "{e}");
}

#[test]
fn targets_are_the_serving_tasks_and_the_draining_ones_by_their_own_address() {
    let lb = &parse(&json!([{"containerName": "web", "containerPort": 80}])).unwrap()[0];
    let net = |last: u8| TaskNetwork {
        interfaces: vec![Interface {
            container: None,
            address: Ipv4Addr::new(172, 29, 0, last),
            host_link: "bv".into(),
            netns: "n".into(),
        }],
        bindings: Vec::new(),
    };
    let (a, b, c) = (net(2), net(3), net(4));
    let tasks = [
        TaskView {
            id: "a",
            serving: true,
            draining: false,
            network: &a,
        },
        TaskView {
            id: "b",
            serving: false,
            draining: true,
            network: &b,
        },
        TaskView {
            id: "c",
            serving: false,
            draining: false,
            network: &c,
        },
    ];
    let t = targets(lb, &tasks);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].0.address, Ipv4Addr::new(172, 29, 0, 2));
    assert_eq!(t[0].1, TargetState::Healthy);
    assert_eq!(t[1].1, TargetState::Draining);
    assert_eq!(t[1].0.port, 80);
}

#[test]
fn requests_per_target_per_minute_from_two_counter_readings() {
    let m = |v: &[(&str, u64)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let before = m(&[("a", 100), ("b", 50), ("gone", 9)]);
    // 30 s: a took 60, b 30 (restarted chain: 30 from zero), c joined with 30.
    let now = m(&[("a", 160), ("b", 30), ("c", 30)]);
    let r = per_target_per_minute(&before, &now, 30_000_000);
    assert!((r - 80.0).abs() < 1e-9, "{r}");
    assert_eq!(per_target_per_minute(&before, &m(&[]), 30_000_000), 0.0);
}
