//! Tasks: RunTask (one to ten of a definition), StartTask (on named instances), StopTask, DescribeTasks, ListTasks.

use serde_json::{json, Value};

use super::{page, required, str_field, strings, tags, Context};
use crate::ecs_api::arn::{definition_reference, last_segment};
use crate::ecs_api::error::ApiError;
use crate::engine::{Task, TaskError};
use crate::store::Tagged;

/// ECS's Task: what `berthctl describe` shows, with ARNs in ECS's form.
pub fn shape(cx: &Context<'_>, t: &Task) -> Value {
    let mut v = crate::dbus::describe(t);
    if let Some(o) = v.as_object_mut() {
        o.insert("taskArn".into(), cx.arns.task(&t.id).into());
        o.insert("clusterArn".into(), cx.arns.cluster().into());
        o.insert(
            "taskDefinitionArn".into(),
            cx.arns.task_definition(&t.task_definition).into(),
        );
        o.insert("launchType".into(), "EC2".into());
        let group = match t
            .started_by
            .as_deref()
            .and_then(|s| s.strip_prefix("service:"))
        {
            Some(service) => format!("service:{service}"),
            None => format!(
                "family:{}",
                t.task_definition.split(':').next().unwrap_or("")
            ),
        };
        o.insert("group".into(), group.into());
        if let Some(cs) = o.get_mut("containers").and_then(Value::as_array_mut) {
            for c in cs {
                c["taskArn"] = cx.arns.task(&t.id).into();
            }
        }
    }
    // ECS leaves a member out rather than send null, at every depth.
    drop_nulls(&mut v);
    v
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, v| !v.is_null());
            o.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// `startedBy` as ECS allows it: up to 128 letters, digits, `-`, `_` and `/`. berth's
/// services start theirs as `service:NAME`, which this can never claim.
fn started_by(body: &Value) -> Result<Option<String>, ApiError> {
    let s = str_field(body, "startedBy")?;
    if let Some(v) = &s {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_/".contains(c);
        if v.is_empty() || v.len() > 128 || !v.chars().all(allowed) {
            return Err(ApiError::invalid(
                "startedBy must be 1-128 letters, digits, hyphens, underscores and slashes",
            ));
        }
    }
    Ok(s)
}

pub fn run(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let reference = required(body, "taskDefinition")?;
    let count = match body.get("count") {
        None | Some(Value::Null) => 1,
        Some(c) => c
            .as_u64()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| ApiError::invalid("count must be 1-10"))?,
    };
    let started_by = started_by(body)?;
    launch(cx, body, &reference, started_by.as_deref(), count)
}

/// StartTask: one task on each container instance named; berth's host is the only one.
pub fn start(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let reference = required(body, "taskDefinition")?;
    let instances = strings(body, "containerInstances")?;
    if instances.is_empty() || instances.len() > 10 {
        return Err(ApiError::invalid(
            "containerInstances must name 1-10 container instances",
        ));
    }
    let started_by = started_by(body)?;
    let (ours, others): (Vec<String>, Vec<String>) =
        instances.into_iter().partition(|i| cx.arns.is_instance(i));
    let mut answer = launch(
        cx,
        body,
        &reference,
        started_by.as_deref(),
        ours.len() as u64,
    )?;
    if let Some(f) = answer["failures"].as_array_mut() {
        f.extend(
            others
                .into_iter()
                .map(|arn| json!({"arn": arn, "reason": "MISSING"})),
        );
    }
    Ok(answer)
}

/// Starts `count` tasks of `reference` on this host, with the request's `tags`; those the
/// host cannot take are failures as ECS's instance reports them.
fn launch(
    cx: &Context<'_>,
    body: &Value,
    reference: &str,
    started_by: Option<&str>,
    count: u64,
) -> Result<Value, ApiError> {
    let given_tags = tags::given_new(body)?;
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..count {
        match cx
            .engine
            .run_task_as(definition_reference(reference), started_by, None)
        {
            Ok(t) => {
                tags::put(cx, &Tagged::Task(t.id.clone()), &given_tags)?;
                let mut v = shape(cx, &t);
                if !given_tags.is_empty() {
                    v["tags"] = json!(given_tags);
                }
                tasks.push(v);
            }
            Err(TaskError::Capacity(refusal)) => failures.push(json!({
                "arn": cx.arns.instance(),
                "reason": refusal.to_string(),
            })),
            // Tasks already started are answered for: a retried call must not start them twice.
            Err(e) if !tasks.is_empty() => failures.push(json!({
                "arn": cx.arns.instance(),
                "reason": ApiError::from(e).message,
            })),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

pub fn stop(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let given = required(body, "task")?;
    let reason = str_field(body, "reason")?.unwrap_or_else(|| "Task stopped by user".into());
    let t = cx
        .engine
        .stop_task(last_segment(&given), &reason)
        .map_err(|e| match e {
            TaskError::NotFound(_) => ApiError::invalid("The referenced task was not found."),
            other => other.into(),
        })?;
    Ok(json!({"task": shape(cx, &t)}))
}

pub fn describe(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let asked = strings(body, "tasks")?;
    if asked.is_empty() || asked.len() > 100 {
        return Err(ApiError::invalid("tasks must name 1-100 tasks"));
    }
    let with_tags = tags::included(body)?;
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for given in asked {
        match cx.engine.task(last_segment(&given)) {
            Ok(t) => {
                let mut v = shape(cx, &t);
                if with_tags {
                    v["tags"] = tags::of(cx, &Tagged::Task(t.id.clone()))?;
                }
                tasks.push(v);
            }
            Err(_) => failures.push(json!({"arn": given, "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

pub fn list(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let family = str_field(body, "family")?;
    let started_by = str_field(body, "startedBy")?;
    let service = str_field(body, "serviceName")?;
    let desired = str_field(body, "desiredStatus")?.unwrap_or_else(|| "RUNNING".into());
    if !matches!(desired.as_str(), "RUNNING" | "PENDING" | "STOPPED") {
        return Err(ApiError::invalid(
            "desiredStatus must be RUNNING, PENDING or STOPPED",
        ));
    }
    let ids: Vec<(String, String)> = cx
        .engine
        .tasks(true)
        .into_iter()
        .filter(|t| t.desired_status.as_str() == desired)
        .filter(|t| {
            family
                .as_ref()
                .is_none_or(|f| t.task_definition.split(':').next() == Some(f.as_str()))
        })
        .filter(|t| {
            started_by
                .as_ref()
                .is_none_or(|s| t.started_by.as_ref() == Some(s))
        })
        .filter(|t| {
            service.as_ref().is_none_or(|s| {
                t.started_by.as_deref() == Some(crate::engine::started_by(last_segment(s)).as_str())
            })
        })
        .map(|t| (t.id.clone(), cx.arns.task(&t.id)))
        .collect();
    let (arns, next) = page(ids, body, 100, false)?;
    Ok(json!({"taskArns": arns, "nextToken": next}))
}
