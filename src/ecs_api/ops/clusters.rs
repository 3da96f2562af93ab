//! ListClusters and DescribeClusters: one cluster, the host.

use serde_json::{json, Value};

use super::{strings, Context};
use crate::ecs_api::error::ApiError;
use crate::engine::Status;

pub fn list(cx: &Context<'_>, _: &Value) -> Result<Value, ApiError> {
    Ok(json!({"clusterArns": [cx.arns.cluster()]}))
}

pub fn describe(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let asked = strings(body, "clusters")?;
    let asked = if asked.is_empty() {
        vec![cx.arns.cluster.clone()]
    } else {
        asked
    };
    let tasks = cx.engine.tasks(false);
    let running = tasks
        .iter()
        .filter(|t| t.last_status == Status::Running)
        .count();
    let pending = tasks
        .iter()
        .filter(|t| matches!(t.last_status, Status::Provisioning | Status::Pending))
        .count();
    let services = cx.engine.services().iter().filter(|s| !s.deleting).count();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for c in asked {
        if cx.arns.is_cluster(Some(&c)) {
            clusters.push(json!({
                "clusterArn": cx.arns.cluster(),
                "clusterName": cx.arns.cluster,
                "status": "ACTIVE",
                "registeredContainerInstancesCount": 1,
                "runningTasksCount": running,
                "pendingTasksCount": pending,
                "activeServicesCount": services,
            }));
        } else {
            failures.push(json!({"arn": c, "reason": "MISSING"}));
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}
