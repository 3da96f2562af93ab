use std::path::Path;

use super::*;
use crate::spec;

fn def(json: &str) -> ContainerDefinition {
    let text = format!(r#"{{"family":"t","containerDefinitions":[{json}]}}"#);
    spec::parse(&text).unwrap().definition.containers[0].clone()
}

fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
    ImageConfig {
        entrypoint: entrypoint.map(v),
        cmd: cmd.map(v),
        env: vec!["PATH=/bin".into(), "LANG=C".into()],
        working_dir: Some("/srv".into()),
        user: None,
    }
}

const TASK: TaskContext = TaskContext {
    task_id: "0123456789abcdef0123456789abcdef",
    network_mode: NetworkMode::None,
    pid_mode: None,
    ipc_mode: None,
    pids_max: 4096,
    host_name: "node-7",
};

/// The config of container `d` in `task` with what the host provides, over an empty image.
fn built(task: &TaskContext, net: &Provided, d: &ContainerDefinition) -> serde_json::Value {
    config(
        task,
        net,
        d,
        &image(None, None),
        &Accounts::default(),
        Path::new("/r"),
        Path::new("/c"),
    )
    .unwrap()
}

#[test]
fn command_replaces_image_cmd_and_keeps_its_entrypoint() {
    let d = def(r#"{"name":"a","image":"x","memory":32,"command":["-c","exit 42"]}"#);
    let args = arguments(&d, &image(Some(&["sh"]), Some(&["--help"])));
    assert_eq!(args, ["sh", "-c", "exit 42"]);
}

#[test]
fn entry_point_drops_the_image_cmd() {
    let d = def(r#"{"name":"a","image":"x","memory":32,"entryPoint":["/bin/true"]}"#);
    assert_eq!(
        arguments(&d, &image(Some(&["sh"]), Some(&["--help"]))),
        ["/bin/true"]
    );
}

#[test]
fn image_cmd_runs_when_the_definition_says_nothing() {
    let d = def(r#"{"name":"a","image":"x","memory":32}"#);
    assert_eq!(arguments(&d, &image(None, Some(&["sh"]))), ["sh"]);
    let e = config(
        &TASK,
        &Provided::default(),
        &d,
        &image(None, None),
        &Accounts::default(),
        Path::new("/r"),
        Path::new("/c"),
    )
    .unwrap_err();
    assert!(matches!(e, BundleError::NoCommand { .. }));
}

#[test]
fn definition_environment_overrides_the_image() {
    let d = def(
        r#"{"name":"a","image":"x","memory":32,"environment":[{"name":"LANG","value":"de_DE"},{"name":"X","value":"1"}]}"#,
    );
    let env = environment(&d, &image(None, Some(&["sh"])), "host");
    assert_eq!(env, ["HOSTNAME=host", "PATH=/bin", "LANG=de_DE", "X=1"]);
}

#[test]
fn named_users_resolve_through_the_image_accounts() {
    let acc = Accounts {
        passwd: "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n".into(),
        group: "root:x:0:\nstaff:x:50:\n".into(),
    };
    assert_eq!(resolve_user("a", Some("www-data"), &acc), Ok((33, 33)));
    assert_eq!(
        resolve_user("a", Some("www-data:staff"), &acc),
        Ok((33, 50))
    );
    assert_eq!(resolve_user("a", Some("1000:1000"), &acc), Ok((1000, 1000)));
    assert_eq!(resolve_user("a", None, &acc), Ok((0, 0)));
    assert!(matches!(
        resolve_user("a", Some("nobody"), &acc),
        Err(BundleError::UnknownUser { .. })
    ));
}

#[test]
fn config_maps_limits_and_is_a_valid_oci_spec() {
    let d = def(
        r#"{"name":"a","image":"x","cpu":256,"memory":32,"memoryReservation":16,"command":["sh"]}"#,
    );
    let v = config(
        &TASK,
        &Provided::default(),
        &d,
        &image(None, None),
        &Accounts::default(),
        Path::new("/var/lib/berth/r"),
        Path::new("/berth/tasks/t/a"),
    )
    .unwrap();
    let r = &v["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 32 * 1024 * 1024);
    assert_eq!(r["memory"]["reservation"], 16 * 1024 * 1024);
    assert_eq!(r["cpu"]["shares"], 256);
    assert_eq!(v["process"]["cwd"], "/srv");
    assert_eq!(v["hostname"], "0123456789ab");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"network") && ns.contains(&"pid"), "{ns:?}");
    let parsed: libcontainer::oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
    assert_eq!(
        parsed.linux().as_ref().unwrap().cgroups_path().as_deref(),
        Some(Path::new("/berth/tasks/t/a"))
    );
}

#[test]
fn host_network_shares_the_network_and_carries_the_hosts_name() {
    let task = TaskContext {
        network_mode: NetworkMode::Host,
        ..TASK
    };
    let d = def(r#"{"name":"a","image":"x","memory":32,"command":["sh"]}"#);
    let v = config(
        &task,
        &Provided::default(),
        &d,
        &image(None, None),
        &Accounts::default(),
        Path::new("/r"),
        Path::new("/c"),
    )
    .unwrap();
    let ns = v["linux"]["namespaces"].to_string();
    assert!(!ns.contains("network"), "{ns}");
    // libcontainer sets a hostname only in a UTS namespace of the container's own.
    assert!(ns.contains("uts"), "{ns}");
    assert_eq!(v["hostname"], "node-7");
    assert!(v["process"]["env"].to_string().contains("HOSTNAME=node-7"));
}

#[test]
fn a_bridge_container_joins_its_namespace_and_gets_berths_hosts_and_resolv_conf() {
    let task = TaskContext {
        network_mode: NetworkMode::Bridge,
        ..TASK
    };
    let net = Provided {
        netns: Some("/run/berth/netns/t-0".into()),
        hosts: Some("/var/lib/berth/tasks/t/containers/a/hosts".into()),
        resolv_conf: Some("/var/lib/berth/tasks/t/containers/a/resolv.conf".into()),
        ..Provided::default()
    };
    let d = def(r#"{"name":"a","image":"x","memory":32,"hostname":"web","command":["sh"]}"#);
    let v = config(
        &task,
        &net,
        &d,
        &image(None, None),
        &Accounts::default(),
        Path::new("/r"),
        Path::new("/c"),
    )
    .unwrap();
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    let netns: Vec<_> = ns.iter().filter(|n| n["type"] == "network").collect();
    assert_eq!(netns.len(), 1, "{ns:?}");
    assert_eq!(netns[0]["path"], "/run/berth/netns/t-0");
    assert_eq!(v["hostname"], "web");
    let mounts = v["mounts"].as_array().unwrap();
    let hosts = mounts
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts["source"], "/var/lib/berth/tasks/t/containers/a/hosts");
    assert!(mounts
        .iter()
        .any(|m| m["destination"] == "/etc/resolv.conf"));
}

#[test]
fn an_init_runs_first_and_devices_are_made_and_allowed() {
    let net = Provided {
        init: Some("/usr/bin/tini-static".into()),
        devices: vec![DeviceNode {
            container_path: "/dev/sda".into(),
            kind: 'b',
            major: 202,
            minor: 0,
            access: "r".into(),
        }],
        ..Provided::default()
    };
    let d = def(
        r#"{"name":"a","image":"x","memory":32,"command":["sh","-c","true"],"readonlyRootFilesystem":true}"#,
    );
    let v = built(&TASK, &net, &d);
    assert_eq!(
        v["process"]["args"],
        serde_json::json!(["/dev/init", "-s", "--", "sh", "-c", "true"])
    );
    assert!(v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/dev/init" && m["source"] == "/usr/bin/tini-static"));
    assert_eq!(v["linux"]["devices"][0]["path"], "/dev/sda");
    assert_eq!(v["linux"]["devices"][0]["type"], "b");
    assert_eq!(v["linux"]["resources"]["devices"][0]["access"], "r");
    assert_eq!(v["root"]["readonly"], true);
}

#[test]
fn no_new_privileges_is_written_only_when_asked_so_the_filter_loads_while_privileged() {
    let cfg = |json: &str| built(&TASK, &Provided::default(), &def(json));
    let plain = cfg(r#"{"name":"a","image":"x","memory":32,"command":["true"]}"#);
    assert!(plain["process"].get("noNewPrivileges").is_none());
    assert_eq!(plain["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    let nnp = cfg(
        r#"{"name":"a","image":"x","memory":32,"command":["true"],"dockerSecurityOptions":["no-new-privileges"]}"#,
    );
    assert_eq!(nnp["process"]["noNewPrivileges"], true);
}

#[test]
fn a_task_shared_dev_shm_is_bound_instead_of_a_tmpfs_of_its_own() {
    let d = def(r#"{"name":"a","image":"x","memory":32,"command":["sh"]}"#);
    let shm_of = |net: &Provided| {
        let v = built(&TASK, net, &d);
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .cloned()
            .unwrap()
    };
    assert_eq!(shm_of(&Provided::default())["type"], "tmpfs");
    let shared = shm_of(&Provided {
        shm: Some("/var/lib/berth/tasks/t/shm".into()),
        ..Provided::default()
    });
    assert_eq!(shared["type"], "bind");
    assert_eq!(shared["source"], "/var/lib/berth/tasks/t/shm");
}
