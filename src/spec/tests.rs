use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(SpecError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn minimal_definition_defaults() {
    let v = parse(
        r#"{"family":"web","containerDefinitions":[{"name":"app","image":"busybox","memory":64}]}"#,
    )
    .unwrap();
    let d = v.definition;
    assert_eq!(d.network_mode, NetworkMode::Bridge);
    assert!(d.containers[0].essential);
    assert_eq!(d.reserved_memory_mib(), 64);
    assert!(v.ignored.is_empty());
}

#[test]
fn three_errors_are_all_reported_with_paths() {
    let p = problems(
        r#"{"family":"bad family","containerDefinitions":[
        {"name":"a","image":"busybox","memory":64},
        {"name":"b","image":"busybox","memory":4}],
        "networkMode":"overlay"}"#,
    );
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p.iter().any(|m| m.starts_with("family: ")), "{p:?}");
    assert!(
        p.iter()
            .any(|m| m == "containerDefinitions[1].memory: must be at least 6 MiB, not 4"),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.starts_with("networkMode: \"overlay\"")),
        "{p:?}"
    );
}

#[test]
fn task_sizes_as_strings_and_units() {
    let v = parse(r#"{"family":"f","cpu":"0.5 vCPU","memory":"1 GB","containerDefinitions":[{"name":"a","image":"i"}]}"#).unwrap();
    assert_eq!(v.definition.cpu, Some(512));
    assert_eq!(v.definition.memory, Some(1024));
    assert_eq!(v.definition.reserved_memory_mib(), 1024);
}

#[test]
fn reservation_prefers_memory_reservation() {
    let v = parse(
        r#"{"family":"f","containerDefinitions":[
        {"name":"a","image":"i","memory":256,"memoryReservation":64},
        {"name":"b","image":"i","memory":32}]}"#,
    )
    .unwrap();
    assert_eq!(v.definition.reserved_memory_mib(), 96);
}

#[test]
fn host_meaningless_fields_are_ignored_not_refused() {
    let v = parse(r#"{"family":"f","executionRoleArn":"arn:aws:iam::1:role/x","requiresCompatibilities":["FARGATE"],
        "containerDefinitions":[{"name":"a","image":"i","memory":64,
        "logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"g"}},"portBindings":[]}]}"#).unwrap();
    let ignored = v.ignored.join("\n");
    assert!(ignored.contains("executionRoleArn (IAM roles"), "{ignored}");
    assert!(!ignored.contains("requiresCompatibilities"), "{ignored}");
    assert!(v.definition.fargate_only);
    assert!(
        ignored.contains("containerDefinitions[0].logConfiguration"),
        "{ignored}"
    );
    assert!(
        ignored.contains("containerDefinitions[0].portBindings (not an ECS field)"),
        "{ignored}"
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = parse("{\n  \"family\": \"x\",\n  \"cpu\": $$$X$$$\n}").unwrap_err();
    match err {
        SpecError::Json { line, column, .. } => assert_eq!((line, column), (3, 10)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn container_needs_memory_when_task_has_none() {
    let p = problems(r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i"}]}"#);
    assert_eq!(p, vec!["containerDefinitions[0].memory: memory or memoryReservation is required when the task sets no memory"]);
}

#[test]
fn references_must_exist() {
    let p = problems(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":8,
        "links":["ghost:g"],"dependsOn":[{"containerName":"nope","condition":"START"}],
        "mountPoints":[{"sourceVolume":"v","containerPath":"/d"}]}]}"#,
    );
    assert_eq!(p.len(), 3, "{p:?}");
}

#[test]
fn no_essential_container_is_refused() {
    let p = problems(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":8,"essential":false}]}"#,
    );
    assert_eq!(
        p,
        vec!["containerDefinitions: at least one container must be essential"]
    );
}

#[test]
fn host_mode_ports_must_match_and_be_mapped_once() {
    let p = problems(
        r#"{"family":"f","networkMode":"host","containerDefinitions":[
        {"name":"a","image":"i","memory":8,"portMappings":[{"containerPort":80,"hostPort":8080}]},
        {"name":"b","image":"i","memory":8,"portMappings":[{"containerPort":9000},{"containerPort":9000,"protocol":"tcp"}]}]}"#,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("containerDefinitions[0].portMappings[0].hostPort")
            && p[0].contains("host network mode"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("containerDefinitions[1].portMappings[1].hostPort")
            && p[1].contains("tcp/9000 is mapped twice"),
        "{p:?}"
    );
}

#[test]
fn host_ports_known_before_start_follow_the_network_mode() {
    let ports = |mode: &str| {
        parse(&format!(
            r#"{{"family":"f","networkMode":"{mode}","containerDefinitions":[
            {{"name":"a","image":"i","memory":8,"portMappings":[
              {{"containerPort":80}},{{"containerPort":53,"hostPort":53,"protocol":"udp"}}]}}]}}"#
        ))
        .unwrap()
        .definition
        .static_host_ports()
    };
    assert_eq!(
        ports("host"),
        vec![(Protocol::Tcp, 80), (Protocol::Udp, 53)]
    );
    assert_eq!(ports("bridge"), vec![(Protocol::Udp, 53)]);
    assert_eq!(ports("none"), vec![]);
}

#[test]
fn a_working_directory_that_is_relative_or_climbs_is_refused_naming_the_field() {
    for dir in ["../../etc/cron.d", "/srv/../../etc", "srv"] {
        let p = problems(&format!(
            r#"{{"family":"w","containerDefinitions":[{{"name":"a","image":"busybox","memory":64,"workingDirectory":"{dir}"}}]}}"#
        ));
        assert_eq!(
            p,
            [format!("containerDefinitions[0].workingDirectory: {dir:?} must be an absolute path without `..` components")]
        );
    }
    assert!(parse(
        r#"{"family":"w","containerDefinitions":[{"name":"a","image":"busybox","memory":64,"workingDirectory":"/srv/app"}]}"#
    )
    .is_ok());
}

#[test]
fn a_described_file_registers_as_the_definition_under_task_definition() {
    let v = parse(
        r#"{"taskDefinition":{"family":"web","revision":7,"status":"ACTIVE","containerDefinitions":[{"name":"app","image":"busybox","memory":64}]},"tags":[{"key":"team","value":"a"}]}"#,
    )
    .unwrap();
    assert_eq!(v.definition.family, "web");
    assert!(
        v.json.get("taskDefinition").is_none(),
        "the inner definition is kept"
    );
    let ignored = v.ignored.join("\n");
    assert!(
        ignored.contains("(beside taskDefinition) tags"),
        "{ignored}"
    );
    // The wrapped definition gets the bare one's checks.
    assert_eq!(
        problems(
            r#"{"taskDefinition":{"family":"web","containerDefinitions":[{"name":"app","image":"busybox","memory":64,"privileged":"yes"}]}}"#
        ),
        ["containerDefinitions[0].privileged: must be true or false, not a string"]
    );
}

#[test]
fn security_options_are_honoured_reported_or_refused_never_dropped() {
    let v = parse(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,"dockerSecurityOptions":["no-new-privileges","seccomp:unconfined","apparmor:docker-default","label:disable"]}]}"#,
    )
    .unwrap();
    let s = &v.definition.containers[0].sandbox;
    assert!(s.no_new_privileges && s.seccomp_unconfined);
    let ignored = v.ignored.join("\n");
    assert!(
        ignored.contains("dockerSecurityOptions[2] (apparmor:docker-default)"),
        "{ignored}"
    );
    assert!(
        ignored.contains("dockerSecurityOptions[3] (label:disable)"),
        "{ignored}"
    );
    let p = problems(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,"dockerSecurityOptions":["seccomp:/etc/profile.json"]}]}"#,
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "containerDefinitions[0].dockerSecurityOptions[0]: \"seccomp:/etc/profile.json\""
        ),
        "{p:?}"
    );
}

#[test]
fn secrets_and_repository_credentials_are_kept_for_run_time() {
    let v = parse(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,"secrets":[{"name":"DB","valueFrom":"db"}],"repositoryCredentials":{"credentialsParameter":"arn:x"}}]}"#,
    )
    .unwrap();
    let c = &v.definition.containers[0];
    assert_eq!(c.secrets[0].value_from, "db");
    assert_eq!(c.repository_credentials.as_deref(), Some("arn:x"));
    assert!(v.ignored.is_empty(), "{:?}", v.ignored);
    assert_eq!(
        problems(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"i","memory":64,"secrets":[{"name":"DB"}]}]}"#
        ),
        ["containerDefinitions[0].secrets[0].valueFrom: is required"]
    );
}
