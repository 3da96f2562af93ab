use serde_json::{json, Value};

use super::*;

fn arns() -> Arns {
    Arns {
        region: "us-east-1".into(),
        account: "000000000000".into(),
        cluster: "default".into(),
        instance: crate::ecs_api::arn::instance_id("0123456789abcdef0123456789abcdef"),
    }
}

#[test]
fn definitions_register_describe_list_and_deregister_in_ecs_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context {
        engine: &engine,
        arns: &a,
    };
    let def = json!({"family": "web", "networkMode": "none",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32}]});
    let r = dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";
    assert_eq!(r["taskDefinition"]["taskDefinitionArn"], arn);
    assert_eq!(r["taskDefinition"]["revision"], 1);
    assert_eq!(r["taskDefinition"]["status"], "ACTIVE");
    let d = dispatch(
        &cx,
        "DescribeTaskDefinition",
        Access::ReadOnly,
        &json!({"taskDefinition": arn}),
    )
    .unwrap();
    assert_eq!(
        d["taskDefinition"]["containerDefinitions"][0]["name"],
        "app"
    );
    dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    let l = dispatch(
        &cx,
        "ListTaskDefinitions",
        Access::ReadOnly,
        &json!({"maxResults": 1}),
    )
    .unwrap();
    assert_eq!(l["taskDefinitionArns"], json!([arn]));
    // Revisions 3-10 registered between the pages: the next page goes on after web:1, in
    // numeric order, skipping nothing.
    for _ in 3..=10 {
        dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    }
    let next = json!({"nextToken": l["nextToken"], "maxResults": 9});
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &next).unwrap();
    let revs: Vec<&str> = l["taskDefinitionArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit(':').next().unwrap())
        .collect();
    assert_eq!(revs, ["2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    assert_eq!(l["nextToken"], Value::Null);
    let desc = json!({"sort": "DESC", "maxResults": 2});
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &desc).unwrap();
    assert_eq!(
        l["taskDefinitionArns"][0],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:10"
    );
    let desc = json!({"sort": "DESC", "nextToken": l["nextToken"]});
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &desc).unwrap();
    assert_eq!(
        l["taskDefinitionArns"][0],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:8"
    );
    let f = dispatch(
        &cx,
        "ListTaskDefinitionFamilies",
        Access::ReadOnly,
        &json!({}),
    )
    .unwrap();
    assert_eq!(f["families"], json!(["web"]));
    let x = dispatch(
        &cx,
        "DeregisterTaskDefinition",
        Access::ReadWrite,
        &json!({"taskDefinition": "web:1"}),
    )
    .unwrap();
    assert_eq!(x["taskDefinition"]["status"], "INACTIVE");
    let e = dispatch(
        &cx,
        "DescribeTaskDefinition",
        Access::ReadOnly,
        &json!({"taskDefinition": "nope"}),
    )
    .unwrap_err();
    assert_eq!(e.exception, "ClientException");
}

#[test]
fn access_clusters_and_unknown_operations_are_refused_in_ecs_words() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context {
        engine: &engine,
        arns: &a,
    };
    let e = dispatch(&cx, "RegisterTaskDefinition", Access::ReadOnly, &json!({})).unwrap_err();
    assert_eq!(e.exception, "AccessDeniedException");
    let e = dispatch(&cx, "Frobnicate", Access::ReadWrite, &json!({})).unwrap_err();
    assert_eq!(e.exception, "UnknownOperationException");
    let e = dispatch(
        &cx,
        "ListTasks",
        Access::ReadOnly,
        &json!({"cluster": "prod"}),
    )
    .unwrap_err();
    assert_eq!((e.exception, e.status()), ("ClusterNotFoundException", 400));
    let ok = dispatch(
        &cx,
        "ListTasks",
        Access::ReadOnly,
        &json!({"cluster": a.cluster()}),
    )
    .unwrap();
    assert_eq!(ok["taskArns"], json!([]));
    let c = dispatch(
        &cx,
        "DescribeClusters",
        Access::ReadOnly,
        &json!({"clusters": ["default", "prod"]}),
    )
    .unwrap();
    assert_eq!(c["clusters"][0]["clusterName"], "default");
    assert_eq!(c["failures"][0]["reason"], "MISSING");
    let e = dispatch(
        &cx,
        "DescribeTasks",
        Access::ReadOnly,
        &json!({"tasks": []}),
    )
    .unwrap_err();
    assert_eq!(e.exception, "InvalidParameterException");
    let d = dispatch(
        &cx,
        "DescribeTasks",
        Access::ReadOnly,
        &json!({"tasks": ["abc"]}),
    )
    .unwrap();
    assert_eq!(d["failures"][0]["reason"], "MISSING");
}

#[test]
fn tags_go_on_at_registration_and_by_arn_and_show_where_included() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context {
        engine: &engine,
        arns: &a,
    };
    let def = json!({"family": "web", "networkMode": "none", "tags": [{"key": "team", "value": "a"}],
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32}]});
    let r = dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    assert_eq!(r["tags"], json!([{"key": "team", "value": "a"}]));
    let arn = r["taskDefinition"]["taskDefinitionArn"].clone();
    let d = dispatch(
        &cx,
        "DescribeTaskDefinition",
        Access::ReadOnly,
        &json!({"taskDefinition": "web:1"}),
    )
    .unwrap();
    assert!(d.get("tags").is_none(), "tags only when included");
    let add = json!({"resourceArn": arn, "tags": [{"key": "env", "value": "prod"}]});
    dispatch(&cx, "TagResource", Access::ReadWrite, &add).unwrap();
    dispatch(
        &cx,
        "UntagResource",
        Access::ReadWrite,
        &json!({"resourceArn": arn, "tagKeys": ["team"]}),
    )
    .unwrap();
    let d = dispatch(
        &cx,
        "DescribeTaskDefinition",
        Access::ReadOnly,
        &json!({"taskDefinition": "web:1", "include": ["TAGS"]}),
    )
    .unwrap();
    assert_eq!(d["tags"], json!([{"key": "env", "value": "prod"}]));
    let l = dispatch(
        &cx,
        "ListTagsForResource",
        Access::ReadOnly,
        &json!({"resourceArn": a.cluster()}),
    )
    .unwrap();
    assert_eq!(l["tags"], json!([]));
    let e = dispatch(&cx, "TagResource", Access::ReadOnly, &add).unwrap_err();
    assert_eq!(e.exception, "AccessDeniedException");
    let gone = json!({"resourceArn": a.task("nosuch"), "tags": [{"key": "k", "value": "v"}]});
    let e = dispatch(&cx, "TagResource", Access::ReadWrite, &gone).unwrap_err();
    assert_eq!(e.exception, "ResourceNotFoundException");
    let bad = json!({"resourceArn": arn, "tags": [{"key": "aws:x", "value": "v"}]});
    let e = dispatch(&cx, "TagResource", Access::ReadWrite, &bad).unwrap_err();
    assert_eq!(
        (e.exception, e.message.as_str()),
        (
            "InvalidParameterException",
            "tags[0].key: the aws: prefix is reserved"
        )
    );
    // A bad tag at registration registers nothing.
    let mut bad_def = def.clone();
    bad_def["tags"] = json!([{"key": "", "value": "v"}]);
    dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &bad_def).unwrap_err();
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &json!({})).unwrap();
    assert_eq!(l["taskDefinitionArns"].as_array().map(Vec::len), Some(1));
}

#[test]
fn the_host_is_the_clusters_one_container_instance() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context {
        engine: &engine,
        arns: &a,
    };
    let l = dispatch(&cx, "ListContainerInstances", Access::ReadOnly, &json!({})).unwrap();
    assert_eq!(l["containerInstanceArns"], json!([a.instance()]));
    let l = dispatch(
        &cx,
        "ListContainerInstances",
        Access::ReadOnly,
        &json!({"status": "DRAINING"}),
    )
    .unwrap();
    assert_eq!(l["containerInstanceArns"], json!([]));
    let d = dispatch(
        &cx,
        "DescribeContainerInstances",
        Access::ReadOnly,
        &json!({"containerInstances": [a.instance, "nosuch"]}),
    )
    .unwrap();
    let ci = &d["containerInstances"][0];
    assert_eq!(ci["containerInstanceArn"], a.instance());
    let cap = engine.capacity();
    let resource = |list: &str, name: &str| {
        ci[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        resource("registeredResources", "MEMORY")["integerValue"],
        cap.registered.memory_mib
    );
    assert_eq!(
        resource("remainingResources", "CPU")["integerValue"],
        cap.remaining.cpu_units
    );
    assert_eq!(
        resource("registeredResources", "PORTS")["type"],
        "STRINGSET"
    );
    assert_eq!(
        d["failures"][0],
        json!({"arn": "nosuch", "reason": "MISSING"})
    );
    // StartTask on an instance that is not this host fails for it alone.
    let def = json!({"family": "web", "networkMode": "none",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32}]});
    dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    // A caller cannot pass its task off as a service's.
    let run = json!({"taskDefinition": "web", "startedBy": "service:web"});
    let e = dispatch(&cx, "RunTask", Access::ReadWrite, &run).unwrap_err();
    assert!(e.message.contains("startedBy"), "{e:?}");
    let s = dispatch(
        &cx,
        "StartTask",
        Access::ReadWrite,
        &json!({"taskDefinition": "web", "containerInstances": ["other"]}),
    )
    .unwrap();
    assert_eq!(s["tasks"], json!([]));
    assert_eq!(s["failures"][0]["reason"], "MISSING");
}
