use super::*;
use crate::spec::{parse, SpecError};

fn problems(json: &str) -> Vec<String> {
    match parse(json) {
        Ok(_) => Vec::new(),
        Err(SpecError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn three(deps_a: &str, deps_b: &str, deps_c: &str) -> String {
    format!(
        r#"{{"family":"f","containerDefinitions":[
        {{"name":"a","image":"b","memory":32,"essential":false,"dependsOn":[{deps_a}]}},
        {{"name":"b","image":"b","memory":32,"essential":false,"dependsOn":[{deps_b}]}},
        {{"name":"c","image":"b","memory":32,"dependsOn":[{deps_c}]}}]}}"#
    )
}

#[test]
fn a_dependency_cycle_is_refused_at_registration_naming_it() {
    let start = |n: &str| format!(r#"{{"containerName":"{n}","condition":"START"}}"#);
    let p = problems(&three(&start("b"), &start("c"), &start("a")));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("containerDefinitions[0].dependsOn: dependency cycle: a -> b -> c -> a"),
        "{p:?}"
    );
    assert!(problems(&three("", &start("a"), &start("b"))).is_empty());
    let p = problems(&three(&start("a"), "", ""));
    assert!(p[0].contains("cannot depend on itself"), "{p:?}");
}

#[test]
fn complete_and_success_wait_only_for_non_essential_containers() {
    let p = problems(&three(
        r#"{"containerName":"c","condition":"SUCCESS"}"#,
        r#"{"containerName":"c","condition":"COMPLETE"}"#,
        "",
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("containerDefinitions[0].dependsOn[0].condition: SUCCESS cannot be set on essential container \"c\""), "{p:?}");
    assert!(problems(&three(
        "",
        "",
        r#"{"containerName":"a","condition":"SUCCESS"}"#
    ))
    .is_empty());
}

#[test]
fn healthy_needs_a_health_check_on_the_dependency() {
    let p = problems(&three(
        "",
        "",
        r#"{"containerName":"a","condition":"HEALTHY"}"#,
    ));
    assert!(
        p[0].contains("HEALTHY needs a healthCheck on \"a\""),
        "{p:?}"
    );
}

#[test]
fn health_checks_take_ecs_defaults_and_ranges() {
    let c: Value = serde_json::from_str(
        r#"{"healthCheck":{"command":["CMD-SHELL","cd /test && touch x"],"interval":5,"timeout":50}}"#,
    )
    .unwrap();
    let mut r = Report::default();
    let h = health_check(&mut r, c.as_object().unwrap(), "c").unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(h.command, ["/bin/sh", "-c", "cd /test && touch x"]);
    assert_eq!(
        (
            h.interval_secs,
            h.timeout_secs,
            h.retries,
            h.start_period_secs
        ),
        (5, 50, 3, 0)
    );
    let c: Value = serde_json::from_str(
        r#"{"healthCheck":{"command":["CMD","true"],"interval":1,"retries":11}}"#,
    )
    .unwrap();
    let mut r = Report::default();
    let h = health_check(&mut r, c.as_object().unwrap(), "c").unwrap();
    assert_eq!(h.command, ["true"]);
    let p: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        p[0].starts_with("c.healthCheck.interval: 1 is outside 5..300"),
        "{p:?}"
    );
    assert!(
        p[1].starts_with("c.healthCheck.retries: 11 is outside 1..10"),
        "{p:?}"
    );
    let c: Value = serde_json::from_str(r#"{"healthCheck":{"command":["curl","x"]}}"#).unwrap();
    let mut r = Report::default();
    assert!(health_check(&mut r, c.as_object().unwrap(), "c").is_none());
    assert!(r.problems[0]
        .to_string()
        .starts_with("c.healthCheck.command: must start with"));
}

#[test]
fn the_ecs_agents_dependson_healthy_definition_reads_as_ecs_means_it() {
    // The shape of ecs-agent/dependson-healthy-shared-volume.json: timeout 50 > interval 5.
    let def = parse(
        r#"{"family":"f","volumes":[{"name":"volume1"}],"containerDefinitions":[
        {"name":"healthy","image":"busybox","memory":64,"essential":false,
         "dependsOn":[{"containerName":"healthy-dependency","condition":"HEALTHY"}]},
        {"name":"healthy-dependency","image":"busybox","memory":64,"essential":true,
         "healthCheck":{"command":["CMD-SHELL","cd /test && touch test.txt"],"interval":5,"timeout":50,"retries":3}}]}"#,
    )
    .unwrap()
    .definition;
    assert_eq!(
        def.containers[0].depends_on,
        [Dependency {
            container: "healthy-dependency".into(),
            condition: Condition::Healthy
        }]
    );
    assert_eq!(
        def.containers[1]
            .health_check
            .as_ref()
            .unwrap()
            .timeout_secs,
        50
    );
}

#[test]
fn environment_files_are_host_paths() {
    let p = problems(
        r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":32,
        "environmentFiles":[{"value":"arn:aws:s3:::bucket/x.env","type":"s3"},{"value":"x.env","type":"s3"}]}]}"#,
    );
    assert!(p[0].starts_with("containerDefinitions[0].environmentFiles[0].value: \"arn:aws:s3:::bucket/x.env\" is an S3 object"), "{p:?}");
    assert!(p[1].contains("must be an absolute path"), "{p:?}");
}
