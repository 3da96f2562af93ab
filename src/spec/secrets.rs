//! `secrets` and `repositoryCredentials` of a container: what a container asks of a secret
//! store. One host has no AWS Secrets Manager or SSM Parameter Store; an operator may keep the
//! values as files in a root-only directory (`secrets_dir`), each named by the parameter or
//! secret the `valueFrom` names. Without that directory a task that asks for secrets is
//! refused at RunTask: a container is never started without variables it asked for.
//!
//! Pure: the mapping from `valueFrom` to a relative file name; reading is the runtime's.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};

use super::walk::{self, join, Report};

/// One `secrets[]` entry: the variable `name` gets the value `value_from` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

/// `secrets` of a container; both fields required, as ECS requires them.
pub fn secrets(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<Secret> {
    walk::objects(r, c, path, "secrets")
        .into_iter()
        .filter_map(|(p, e)| {
            let name = walk::string(r, e, &p, "name");
            let value_from = walk::string(r, e, &p, "valueFrom");
            if name.is_none() {
                r.problem(join(&p, "name"), "is required");
            }
            if value_from.is_none() {
                r.problem(join(&p, "valueFrom"), "is required");
            }
            Some(Secret {
                name: name?,
                value_from: value_from?,
            })
        })
        .collect()
}

/// `repositoryCredentials.credentialsParameter`, when given.
pub fn repository_credentials(
    r: &mut Report,
    c: &Map<String, Value>,
    path: &str,
) -> Option<String> {
    let p = join(path, "repositoryCredentials");
    let o = walk::object(r, walk::get(c, "repositoryCredentials")?, &p)?;
    let param = walk::string(r, o, &p, "credentialsParameter");
    if param.is_none() {
        r.problem(join(&p, "credentialsParameter"), "is required");
    }
    param
}

/// The file (relative to `secrets_dir`) holding the value `value_from` names:
/// - an SSM parameter's name (`db-password`, `/prod/db/password`) or ARN
///   (`arn:aws:ssm:REGION:ACCOUNT:parameter/prod/db/password`): `prod/db/password`;
/// - a Secrets Manager ARN (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`): `NAME`.
///
/// A Secrets Manager JSON key or version (`...:secret:NAME:KEY::`) is refused: the file is
/// the value as it is. Every component must be a plain name (no `..`, nothing empty).
pub fn secret_file(value_from: &str) -> Result<PathBuf, String> {
    let rel = if let Some(arn) = value_from.strip_prefix("arn:") {
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        let (service, resource) = match parts.as_slice() {
            [_, service, _, _, resource] => (*service, *resource),
            _ => {
                return Err(format!(
                    "\"{value_from}\" is not an ARN of SSM or Secrets Manager"
                ))
            }
        };
        match service {
            "ssm" => resource
                .strip_prefix("parameter/")
                .ok_or_else(|| format!("\"{value_from}\": an SSM ARN names a parameter/..."))?
                .to_string(),
            "secretsmanager" => {
                let rest = resource.strip_prefix("secret:").ok_or_else(|| {
                    format!("\"{value_from}\": a Secrets Manager ARN names secret:NAME")
                })?;
                let mut fields = rest.split(':');
                let name = fields.next().unwrap_or_default();
                if fields.any(|f| !f.is_empty()) {
                    return Err(format!("\"{value_from}\": a JSON key or version of a secret is not supported; keep the value itself in the file"));
                }
                name.to_string()
            }
            other => {
                return Err(format!(
                    "\"{value_from}\": {other} is not a secret store (ssm or secretsmanager)"
                ))
            }
        }
    } else {
        value_from.to_string()
    };
    let rel = rel.trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').collect();
    let plain = |p: &&str| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if parts.is_empty() || !parts.iter().all(plain) {
        return Err(format!(
            "\"{value_from}\" does not name a file of plain names (letters, digits, - _ .) beneath secrets_dir"
        ));
    }
    Ok(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_from_names_a_file_beneath_the_directory() {
        for (from, file) in [
            ("db-password", "db-password"),
            ("/prod/db/password", "prod/db/password"),
            (
                "arn:aws:ssm:us-east-1:123456789012:parameter/prod/db/password",
                "prod/db/password",
            ),
            (
                "arn:aws:ssm:us-east-1:123456789012:parameter/plain",
                "plain",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-key-AbCdEf",
                "app-key-AbCdEf",
            ),
            (
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-key-AbCdEf:::",
                "app-key-AbCdEf",
            ),
        ] {
            assert_eq!(
                secret_file(from).as_deref(),
                Ok(std::path::Path::new(file)),
                "{from}"
            );
        }
    }

    #[test]
    fn a_value_from_that_climbs_or_asks_for_a_json_key_is_refused() {
        for from in [
            "../../etc/shadow",
            "/prod/../../etc/shadow",
            "a//b",
            "",
            "/",
            "arn:aws:ssm:us-east-1:1:parameter/../x",
            "arn:aws:secretsmanager:us-east-1:1:secret:name:password::",
            "arn:aws:s3:::bucket/key",
            "arn:aws:ssm",
            "name with spaces",
        ] {
            assert!(secret_file(from).is_err(), "{from:?} was accepted");
        }
    }
}
