//! The operations: each reads ECS's request shape, calls the engine's verb (the same call
//! D-Bus makes) and answers in ECS's response shape. Fields berth lacks are absent.

mod clusters;
mod definitions;
mod instances;
mod services;
mod tags;
mod tasks;

use serde_json::Value;

use super::arn::Arns;
use super::error::ApiError;
use super::keys::Access;
use crate::engine::Engine;

pub struct Context<'a> {
    pub engine: &'a Engine,
    pub arns: &'a Arns,
}

type Op = fn(&Context<'_>, &Value) -> Result<Value, ApiError>;

/// (name, changes state, handler).
const OPS: &[(&str, bool, Op)] = &[
    ("ListClusters", false, clusters::list),
    ("DescribeClusters", false, clusters::describe),
    ("RegisterTaskDefinition", true, definitions::register),
    ("DescribeTaskDefinition", false, definitions::describe),
    ("ListTaskDefinitions", false, definitions::list),
    ("ListTaskDefinitionFamilies", false, definitions::families),
    ("DeregisterTaskDefinition", true, definitions::deregister),
    ("RunTask", true, tasks::run),
    ("StartTask", true, tasks::start),
    ("StopTask", true, tasks::stop),
    ("DescribeTasks", false, tasks::describe),
    ("ListTasks", false, tasks::list),
    ("CreateService", true, services::create),
    ("UpdateService", true, services::update),
    ("DeleteService", true, services::delete),
    ("DescribeServices", false, services::describe),
    ("ListServices", false, services::list),
    ("ListContainerInstances", false, instances::list),
    ("DescribeContainerInstances", false, instances::describe),
    ("TagResource", true, tags::tag),
    ("UntagResource", true, tags::untag),
    ("ListTagsForResource", false, tags::list),
];

/// Runs `op` for a caller with `access`.
pub fn dispatch(
    cx: &Context<'_>,
    op: &str,
    access: Access,
    body: &Value,
) -> Result<Value, ApiError> {
    let Some((_, writes, handler)) = OPS.iter().find(|(name, _, _)| *name == op) else {
        return Err(ApiError::new(
            "UnknownOperationException",
            format!("berth does not implement the ECS operation {op}"),
        ));
    };
    if *writes && access == Access::ReadOnly {
        return Err(ApiError::new(
            "AccessDeniedException",
            format!("this access key is read-only: it may not call {op}"),
        ));
    }
    if !body.is_object() {
        return Err(ApiError::new(
            "SerializationException",
            "the body must be a JSON object",
        ));
    }
    if !cx.arns.is_cluster(str_field(body, "cluster")?.as_deref()) {
        return Err(ApiError::new(
            "ClusterNotFoundException",
            "Cluster not found.",
        ));
    }
    handler(cx, body)
}

/// A string member, `None` when absent or null; anything else is refused naming it.
pub fn str_field(body: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("{name} must be a string"))),
    }
}

pub fn required(body: &Value, name: &str) -> Result<String, ApiError> {
    str_field(body, name)?.ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

/// A list of strings member (empty when absent).
pub fn strings(body: &Value, name: &str) -> Result<Vec<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| ApiError::invalid(format!("{name} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(format!(
            "{name} must be a list of strings"
        ))),
    }
}

/// ECS's paging: `maxResults` (1-100, `default`) and `nextToken`, which is the sort key of
/// the last item given, so a list that changes between pages neither skips nor repeats what
/// stays in it. `items` are (sort key, value).
pub fn page(
    mut items: Vec<(String, String)>,
    body: &Value,
    default: usize,
    descending: bool,
) -> Result<(Vec<String>, Option<String>), ApiError> {
    let max = match body.get("maxResults") {
        None | Some(Value::Null) => default,
        Some(v) => {
            v.as_u64()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| ApiError::invalid("maxResults must be 1-100"))? as usize
        }
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let after = str_field(body, "nextToken")?;
    let rest: Vec<(String, String)> = items
        .into_iter()
        .filter(|(k, _)| match &after {
            None => true,
            Some(t) if descending => k < t,
            Some(t) => k > t,
        })
        .collect();
    let next = (rest.len() > max).then(|| rest[max - 1].0.clone());
    Ok((rest.into_iter().take(max).map(|(_, v)| v).collect(), next))
}

/// Items keyed by themselves.
pub fn keyed(items: impl IntoIterator<Item = String>) -> Vec<(String, String)> {
    items.into_iter().map(|i| (i.clone(), i)).collect()
}

#[cfg(test)]
mod tests;
