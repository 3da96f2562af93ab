//! Reading ECS JSON by hand, so that every problem is collected with its JSON path (instead of
//! serde stopping at the first), `null` reads as absent, numbers may come as strings where ECS
//! allows, and unknown keys are reported rather than refused.

use serde_json::{Map, Value};

/// One thing wrong with a definition, at a JSON path such as `containerDefinitions[1].memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Collects problems and ignored fields while walking one definition.
#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<Problem>,
    pub ignored: Vec<String>,
}

impl Report {
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn ignore(&mut self, path: impl Into<String>, why: &str) {
        self.ignored.push(format!("{} ({why})", path.into()));
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// An object's field, with `null` read as absent.
pub fn get<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub fn string(r: &mut Report, obj: &Map<String, Value>, path: &str, key: &str) -> Option<String> {
    match get(obj, key)? {
        Value::String(s) => Some(s.clone()),
        other => {
            r.problem(
                join(path, key),
                format!("must be a string, not {}", kind(other)),
            );
            None
        }
    }
}

pub fn boolean(r: &mut Report, obj: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
    match get(obj, key)? {
        Value::Bool(b) => Some(*b),
        other => {
            r.problem(
                join(path, key),
                format!("must be true or false, not {}", kind(other)),
            );
            None
        }
    }
}

/// A non-negative integer, given as a number or (as the ECS API tolerates) a numeric string.
pub fn integer(r: &mut Report, obj: &Map<String, Value>, path: &str, key: &str) -> Option<u64> {
    let v = get(obj, key)?;
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if n.is_none() {
        r.problem(
            join(path, key),
            format!("must be a non-negative integer, not {}", show(v)),
        );
    }
    n
}

pub fn strings(
    r: &mut Report,
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Option<Vec<String>> {
    let items = array(r, obj, path, key)?;
    let p = join(path, key);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => out.push(s.clone()),
            other => r.problem(
                index(&p, i),
                format!("must be a string, not {}", kind(other)),
            ),
        }
    }
    Some(out)
}

pub fn array<'v>(
    r: &mut Report,
    obj: &'v Map<String, Value>,
    path: &str,
    key: &str,
) -> Option<&'v Vec<Value>> {
    match get(obj, key)? {
        Value::Array(a) => Some(a),
        other => {
            r.problem(
                join(path, key),
                format!("must be a list, not {}", kind(other)),
            );
            None
        }
    }
}

pub fn object<'v>(r: &mut Report, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
    match v {
        Value::Object(o) => Some(o),
        other => {
            r.problem(path, format!("must be an object, not {}", kind(other)));
            None
        }
    }
}

/// Objects of a list field, each with its path.
pub fn objects<'v>(
    r: &mut Report,
    obj: &'v Map<String, Value>,
    path: &str,
    key: &str,
) -> Vec<(String, &'v Map<String, Value>)> {
    let Some(items) = array(r, obj, path, key) else {
        return Vec::new();
    };
    let p = join(path, key);
    items
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let ip = index(&p, i);
            object(r, v, &ip).map(|o| (ip, o))
        })
        .collect()
}

/// Reports keys of `obj` that are neither `known` nor `ignored` as unknown (kept, ignored),
/// and present `ignored` keys as meaningless on one host.
pub fn check_keys(
    r: &mut Report,
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
    ignored: &[(&str, &str)],
) {
    for (key, value) in obj {
        if value.is_null() || known.contains(&key.as_str()) {
            continue;
        }
        match ignored.iter().find(|(k, _)| k == key) {
            Some((_, why)) => r.ignore(join(path, key), why),
            None => r.ignore(join(path, key), "not an ECS field"),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        other => kind(other).to_string(),
    }
}
