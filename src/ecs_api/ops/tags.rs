//! TagResource, UntagResource, ListTagsForResource, and the `tags` members of the creating
//! calls and of `include: ["TAGS"]`.

use serde_json::{json, Value};

use super::{required, strings, Context};
use crate::ecs_api::error::ApiError;
use crate::store::{Tag, Tagged};

/// The `tags` member: a list of `{key, value}` (empty when absent).
pub fn given(body: &Value) -> Result<Vec<Tag>, ApiError> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::invalid(format!("tags must be a list of {{key, value}}: {e}"))),
    }
}

/// A creating call's `tags`, checked before it creates anything, so a bad tag creates
/// nothing.
pub fn given_new(body: &Value) -> Result<Vec<Tag>, ApiError> {
    let tags = given(body)?;
    crate::engine::check_tags(&tags, &[])?;
    Ok(tags)
}

/// Puts the `tags` of a creating call on what it created.
pub fn put(cx: &Context<'_>, on: &Tagged, tags: &[Tag]) -> Result<(), ApiError> {
    if tags.is_empty() {
        return Ok(());
    }
    Ok(cx.engine.tag(on, tags)?)
}

/// Whether the request's `include` asks for tags.
pub fn included(body: &Value) -> Result<bool, ApiError> {
    Ok(strings(body, "include")?.iter().any(|i| i == "TAGS"))
}

pub fn of(cx: &Context<'_>, on: &Tagged) -> Result<Value, ApiError> {
    Ok(json!(cx.engine.tags(on)?))
}

fn resource(cx: &Context<'_>, body: &Value) -> Result<Tagged, ApiError> {
    let arn = required(body, "resourceArn")?;
    cx.arns.tagged(&arn).ok_or_else(|| {
        ApiError::invalid(format!(
            "{arn} is not the ARN of a resource of this cluster"
        ))
    })
}

pub fn tag(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let on = resource(cx, body)?;
    let tags = given(body)?;
    if tags.is_empty() {
        return Err(ApiError::invalid("tags must hold at least one tag"));
    }
    cx.engine.tag(&on, &tags)?;
    Ok(json!({}))
}

pub fn untag(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let on = resource(cx, body)?;
    cx.engine.untag(&on, &strings(body, "tagKeys")?)?;
    Ok(json!({}))
}

pub fn list(cx: &Context<'_>, body: &Value) -> Result<Value, ApiError> {
    let on = resource(cx, body)?;
    Ok(json!({"tags": of(cx, &on)?}))
}
