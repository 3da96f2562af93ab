//! ECS task definitions: the JSON operators already have, read as ECS reads it and validated
//! into a typed [`TaskDefinition`]. Every problem is reported at once with its JSON path;
//! fields without meaning on one host are kept and listed as ignored.
//!
//! Pure: no I/O, nothing from the rest of berth.

mod container;
mod model;
pub mod order;
pub mod policy;
pub mod runnable;
pub mod sandbox;
pub mod secrets;
mod task;
mod units;
pub mod volumes;
mod walk;

pub use model::{
    ContainerDefinition, NetworkMode, PortMapping, Protocol, SharedNamespace, TaskDefinition,
};
pub use walk::Problem;

/// A definition that passed validation, with what berth will not act on.
#[derive(Debug, Clone)]
pub struct Validated {
    pub definition: TaskDefinition,
    /// Paths of kept-but-ignored fields, each with why (`executionRoleArn (IAM roles ...)`).
    pub ignored: Vec<String>,
    /// The JSON as given, for describe.
    pub json: serde_json::Value,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("not valid JSON: {message} at line {line} column {column}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{} problem(s) in the task definition: {}", .0.len(), .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// Parses and validates ECS task definition JSON.
pub fn parse(text: &str) -> Result<Validated, SpecError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = full.split(" at line ").next().unwrap_or(&full).to_string();
        SpecError::Json {
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    let mut report = walk::Report::default();
    let json = unwrap_described(&mut report, json);
    let definition = task::validate(&mut report, &json);
    match definition {
        Some(definition) if report.problems.is_empty() => Ok(Validated {
            definition,
            ignored: report.ignored,
            json,
        }),
        _ => Err(SpecError::Invalid(report.problems)),
    }
}

/// A file as `aws ecs describe-task-definition` prints it: the definition under
/// `taskDefinition`, with `tags` (or other keys) beside it. Operators keep such files; the
/// definition inside is the one registered and checked, and the keys beside it are reported as
/// ignored. A file with `containerDefinitions` of its own is a bare definition, whatever else
/// it holds.
fn unwrap_described(r: &mut walk::Report, json: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(mut outer) = json else {
        return json;
    };
    let wrapped = !outer.contains_key("containerDefinitions")
        && outer.get("taskDefinition").is_some_and(|v| v.is_object());
    if !wrapped {
        return serde_json::Value::Object(outer);
    }
    let inner = outer.remove("taskDefinition").unwrap_or_default();
    for key in outer.keys() {
        r.ignore(
            format!("(beside taskDefinition) {key}"),
            "describe-task-definition output: the definition under taskDefinition is registered",
        );
    }
    inner
}

#[cfg(test)]
mod tests;

/// An absolute path in a container that stays inside it however it is joined to the root
/// filesystem: it starts with `/` and has no `..` component.
pub fn is_inside_path(p: &str) -> bool {
    p.starts_with('/') && !p.split('/').any(|c| c == "..")
}
