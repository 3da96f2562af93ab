//! Task definitions: register (the request is ECS's definition JSON, validated as
//! `berthctl register` validates it), describe, list, list families, deregister.

use serde_json::{json, Value};

use super::{keyed, page, required, str_field, tags, Context};
use crate::ecs_api::arn::definition_reference;
use crate::ecs_api::error::ApiError;
use crate::engine::Registered;
use crate::store::Tagged;

/// ECS's TaskDefinition: the JSON as registered with the fields ECS adds.
pub fn shape(cx: &Context<'_>, r: &Registered) -> Value {
    let mut v = r.json.clone();
    if let Some(o) = v.as_object_mut() {
        // Request-only members are not part of a TaskDefinition.
        o.remove("tags");
        o.insert(
            "taskDefinitionArn".into(),
            cx.arns.task_definition(&r.reference()).into(),
        );
        o.insert("family".into(), r.family.clone().into());
        o.insert("revision".into(), r.revision.into());
        o.insert(
            "status".into(),
            if r.active { "ACTIVE" } else { "INACTIVE" }.into(),
        );
        o.insert("compatibilities".into(), json!(["EC2"]));
    }
    v
}

pub fn register(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    required(body, "family")?;
    let tags = tags::given_new(body)?;
    let r = cx.engine.register_definition(&body.to_string())?;
    tags::put(cx, &Tagged::Definition(r.reference()), &tags)?;
    Ok(json!({"taskDefinition": shape(cx, &r), "tags": tags}))
}

pub fn describe(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let given = required(body, "taskDefinition")?;
    let r = cx
        .engine
        .describe_definition(definition_reference(&given))
        .map_err(|_| ApiError::client("Unable to describe task definition."))?;
    let mut answer = json!({"taskDefinition": shape(cx, &r)});
    if tags::included(body)? {
        answer["tags"] = tags::of(cx, &Tagged::Definition(r.reference()))?;
    }
    Ok(answer)
}

pub fn list(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let prefix = str_field(body, "familyPrefix")?.unwrap_or_default();
    let listed = match str_field(body, "status")?.as_deref() {
        None | Some("ACTIVE") => cx.engine.list_definitions(&prefix),
        Some("INACTIVE") => cx.engine.list_inactive_definitions(&prefix),
        Some(_) => return Err(ApiError::invalid("status must be ACTIVE or INACTIVE")),
    };
    // Keyed by family, then revision as a fixed-width number (a space sorts before any
    // character a family may hold), so `web:10` follows `web:9`.
    let items = listed
        .into_iter()
        .filter_map(|r| {
            let (family, rev) = r.split_once(':')?;
            let rev: u32 = rev.parse().ok()?;
            (prefix.is_empty() || family == prefix)
                .then(|| (format!("{family} {rev:010}"), cx.arns.task_definition(&r)))
        })
        .collect();
    let descending = str_field(body, "sort")?.as_deref() == Some("DESC");
    let (arns, next) = page(items, body, 100, descending)?;
    Ok(json!({"taskDefinitionArns": arns, "nextToken": next}))
}

pub fn families(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let prefix = str_field(body, "familyPrefix")?.unwrap_or_default();
    let family = |refs: Vec<String>| -> std::collections::BTreeSet<String> {
        refs.iter()
            .filter_map(|r| r.split(':').next().map(String::from))
            .collect()
    };
    let active = family(cx.engine.list_definitions(&prefix));
    let inactive = family(cx.engine.list_inactive_definitions(&prefix));
    // ECS: ACTIVE, families with an active revision; INACTIVE, those with none; unset, all.
    let fams: Vec<String> = match str_field(body, "status")?.as_deref() {
        None | Some("ALL") => active.union(&inactive).cloned().collect(),
        Some("ACTIVE") => active.into_iter().collect(),
        Some("INACTIVE") => inactive.difference(&active).cloned().collect(),
        Some(_) => return Err(ApiError::invalid("status must be ACTIVE, INACTIVE or ALL")),
    };
    let (fams, next) = page(keyed(fams), body, 100, false)?;
    Ok(json!({"families": fams, "nextToken": next}))
}

pub fn deregister(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let given = required(body, "taskDefinition")?;
    let reference = cx
        .engine
        .deregister_definition(definition_reference(&given))?;
    let r = cx.engine.describe_definition(&reference)?;
    Ok(json!({"taskDefinition": shape(cx, &r)}))
}
