//! Services: create, update (a new revision is a rolling deployment), delete, describe (with
//! `deployments` and `events` as ECS reports them, so `aws ecs wait services-stable` works),
//! list.

use serde_json::{json, Value};

use super::{page, required, str_field, strings, tags, Context};
use crate::ecs_api::arn::{definition_reference, last_segment};
use crate::ecs_api::error::ApiError;
use crate::engine::ServiceSpec;
use crate::service::Service;
use crate::store::Tagged;

fn service_name(body: &Value, field: &str) -> Result<String, ApiError> {
    Ok(last_segment(&required(body, field)?).to_string())
}

/// ECS's Service: what `berthctl service describe` shows, with ARNs and ids in ECS's form.
pub fn shape(cx: &Context<'_>, s: &Service) -> Value {
    let mut v = crate::dbus::service::describe(s, cx.engine);
    let def_arn = |r: &Value| r.as_str().map(|r| cx.arns.task_definition(r));
    if let Some(o) = v.as_object_mut() {
        o.insert("serviceArn".into(), cx.arns.service(&s.name).into());
        o.insert("clusterArn".into(), cx.arns.cluster().into());
        o.insert("launchType".into(), "EC2".into());
        o.insert("schedulingStrategy".into(), "REPLICA".into());
        let td = o.get("taskDefinition").and_then(def_arn);
        o.insert("taskDefinition".into(), td.into());
        if let Some(ds) = o.get_mut("deployments").and_then(Value::as_array_mut) {
            for d in ds {
                let td = def_arn(&d["taskDefinition"]);
                d["taskDefinition"] = td.into();
                d["desiredCount"] = s.desired_count.into();
            }
        }
        if let Some(es) = o.get_mut("events").and_then(Value::as_array_mut) {
            // Newest first, as the model keeps them; an event's id is its own for as long as
            // it is kept (its time in µs), so tools that follow events by id see new ones.
            for (e, at) in es.iter_mut().zip(s.events.iter().rev().map(|e| e.at)) {
                e["id"] = format!("{}-{at}", s.name).into();
            }
        }
        o.remove("tasks");
        o.retain(|_, v| !v.is_null());
    }
    v
}

fn percent(body: &Value, name: &str, default: u32) -> Result<u32, ApiError> {
    match body
        .get("deploymentConfiguration")
        .and_then(|d| d.get(name))
    {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "deploymentConfiguration.{name} must be a whole number"
                ))
            }),
    }
}

fn count(body: &Value, name: &str) -> Result<Option<u32>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid(format!("{name} must be a whole number"))),
    }
}

pub fn create(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let load_balancers = match body.get("loadBalancers") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => crate::balance::parse(v).map_err(ApiError::invalid)?,
    };
    let spec = ServiceSpec {
        name: required(body, "serviceName")?,
        task_definition: definition_reference(&required(body, "taskDefinition")?).to_string(),
        desired_count: count(body, "desiredCount")?.unwrap_or(0),
        min_healthy_percent: percent(body, "minimumHealthyPercent", 100)?,
        max_percent: percent(body, "maximumPercent", 200)?,
        isolation: None,
        load_balancers,
    };
    let given_tags = tags::given_new(body)?;
    let s = cx.engine.create_service(&spec)?;
    tags::put(cx, &Tagged::Service(s.name.clone()), &given_tags)?;
    let mut v = shape(cx, &s);
    if !given_tags.is_empty() {
        v["tags"] = json!(given_tags);
    }
    Ok(json!({"service": v}))
}

pub fn update(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let name = service_name(body, "service")?;
    let td = str_field(body, "taskDefinition")?;
    let current = cx.engine.service(&name)?;
    if current.deleting {
        return Err(ApiError::new(
            "ServiceNotActiveException",
            "Service was not ACTIVE.",
        ));
    }
    let s = cx.engine.update_service(
        &name,
        td.as_deref().map(definition_reference),
        count(body, "desiredCount")?,
    )?;
    Ok(json!({"service": shape(cx, &s)}))
}

pub fn delete(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let name = service_name(body, "service")?;
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    let current = cx.engine.service(&name)?;
    if current.desired_count > 0 && !force {
        return Err(ApiError::invalid(
            "The service cannot be stopped while it is scaled above 0.",
        ));
    }
    let s = cx.engine.delete_service(&name)?;
    Ok(json!({"service": shape(cx, &s)}))
}

pub fn describe(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let asked = strings(body, "services")?;
    if asked.is_empty() || asked.len() > 10 {
        return Err(ApiError::invalid("services must name 1-10 services"));
    }
    let with_tags = tags::included(body)?;
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for given in asked {
        match cx.engine.service(last_segment(&given)) {
            Ok(s) => {
                let mut v = shape(cx, &s);
                if with_tags && !s.deleting {
                    v["tags"] = tags::of(cx, &Tagged::Service(s.name.clone()))?;
                }
                services.push(v);
            }
            Err(_) => failures.push(json!({
                "arn": cx.arns.service(last_segment(&given)),
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({"services": services, "failures": failures}))
}

pub fn list(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let items = cx
        .engine
        .services()
        .iter()
        .filter(|s| !s.deleting)
        .map(|s| (s.name.clone(), cx.arns.service(&s.name)))
        .collect();
    let (arns, next) = page(items, body, 10, false)?;
    Ok(json!({"serviceArns": arns, "nextToken": next}))
}
