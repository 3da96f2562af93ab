use serde_json::json;

use super::*;

fn arns() -> Arns {
    Arns {
        region: "us-east-1".into(),
        account: "000000000000".into(),
        cluster: "default".into(),
    }
}

#[test]
fn definitions_register_describe_list_and_deregister_in_ecs_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context { engine: &engine, arns: &a };
    let def = json!({"family": "web", "networkMode": "none",
        "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32}]});
    let r = dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    let arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";
    assert_eq!(r["taskDefinition"]["taskDefinitionArn"], arn);
    assert_eq!(r["taskDefinition"]["revision"], 1);
    assert_eq!(r["taskDefinition"]["status"], "ACTIVE");
    let d = dispatch(&cx, "DescribeTaskDefinition", Access::ReadOnly, &json!({"taskDefinition": arn})).unwrap();
    assert_eq!(d["taskDefinition"]["containerDefinitions"][0]["name"], "app");
    dispatch(&cx, "RegisterTaskDefinition", Access::ReadWrite, &def).unwrap();
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &json!({"maxResults": 1})).unwrap();
    assert_eq!(l["taskDefinitionArns"], json!([arn]));
    assert_eq!(l["nextToken"], "1");
    let l = dispatch(&cx, "ListTaskDefinitions", Access::ReadOnly, &json!({"nextToken": "1"})).unwrap();
    assert_eq!(l["taskDefinitionArns"][0], "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2");
    let f = dispatch(&cx, "ListTaskDefinitionFamilies", Access::ReadOnly, &json!({})).unwrap();
    assert_eq!(f["families"], json!(["web"]));
    let x = dispatch(&cx, "DeregisterTaskDefinition", Access::ReadWrite, &json!({"taskDefinition": "web:1"})).unwrap();
    assert_eq!(x["taskDefinition"]["status"], "INACTIVE");
    let e = dispatch(&cx, "DescribeTaskDefinition", Access::ReadOnly, &json!({"taskDefinition": "nope"})).unwrap_err();
    assert_eq!(e.exception, "ClientException");
}

#[test]
fn access_clusters_and_unknown_operations_are_refused_in_ecs_words() {
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::test_engine(dir.path());
    let a = arns();
    let cx = Context { engine: &engine, arns: &a };
    let e = dispatch(&cx, "RegisterTaskDefinition", Access::ReadOnly, &json!({})).unwrap_err();
    assert_eq!(e.exception, "AccessDeniedException");
    let e = dispatch(&cx, "Frobnicate", Access::ReadWrite, &json!({})).unwrap_err();
    assert_eq!(e.exception, "UnknownOperationException");
    let e = dispatch(&cx, "ListTasks", Access::ReadOnly, &json!({"cluster": "prod"})).unwrap_err();
    assert_eq!((e.exception, e.status()), ("ClusterNotFoundException", 400));
    let ok = dispatch(&cx, "ListTasks", Access::ReadOnly, &json!({"cluster": a.cluster()})).unwrap();
    assert_eq!(ok["taskArns"], json!([]));
    let c = dispatch(&cx, "DescribeClusters", Access::ReadOnly, &json!({"clusters": ["default", "prod"]})).unwrap();
    assert_eq!(c["clusters"][0]["clusterName"], "default");
    assert_eq!(c["failures"][0]["reason"], "MISSING");
    let e = dispatch(&cx, "DescribeTasks", Access::ReadOnly, &json!({"tasks": []})).unwrap_err();
    assert_eq!(e.exception, "InvalidParameterException");
    let d = dispatch(&cx, "DescribeTasks", Access::ReadOnly, &json!({"tasks": ["abc"]})).unwrap();
    assert_eq!(d["failures"][0]["reason"], "MISSING");
}
