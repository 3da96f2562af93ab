//! Registry logins as operators already keep them: Docker's `config.json` (`auths`, as
//! `docker login` and `skopeo login --authfile` write it) in a root-only file, and a task's
//! `repositoryCredentials` secret (`{"username": …, "password": …}`, the shape ECS keeps in
//! Secrets Manager). The file's owner and mode are checked before it is read: a login another
//! user could plant would let them serve a task's image.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

/// A registry login. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.username)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("registry login file {path}: {why}")]
    File { path: String, why: String },
    #[error("registry login for {registry} in {path}: {why}")]
    Entry {
        registry: String,
        path: String,
        why: String,
    },
    #[error("repositoryCredentials secret: {0}")]
    Secret(String),
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// The registry host a `config.json` key names: `https://index.docker.io/v1/` and
/// `registry:5000` alike become the host (with port), Docker Hub's aliases `docker.io`.
pub fn registry_key(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// The login for `registry` in a Docker `config.json`'s bytes, if it has one; `shown` names
/// the file in errors.
pub fn from_docker_config(
    bytes: &[u8],
    registry: &str,
    shown: &str,
) -> Result<Option<Credentials>, AuthError> {
    let config: DockerConfig = serde_json::from_slice(bytes).map_err(|e| AuthError::File {
        path: shown.into(),
        why: format!("not a Docker config.json: {e}"),
    })?;
    let want = registry_key(registry);
    let Some(entry) = config
        .auths
        .iter()
        .find(|(k, _)| registry_key(k) == want)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    let bad = |why: &str| AuthError::Entry {
        registry: want.clone(),
        path: shown.into(),
        why: why.into(),
    };
    if let Some(encoded) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| bad("\"auth\" is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("\"auth\" is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" is not base64 of user:password"))?;
        return Ok(Some(Credentials {
            username: username.into(),
            password: password.into(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        })),
        _ => Err(bad(
            "has neither \"auth\" nor \"username\" and \"password\"",
        )),
    }
}

/// A `repositoryCredentials` secret's value: ECS's JSON `{"username", "password"}`.
pub fn from_secret(value: &str) -> Result<Credentials, AuthError> {
    #[derive(Deserialize)]
    struct Secret {
        username: String,
        password: String,
    }
    let s: Secret = serde_json::from_str(value).map_err(|_| {
        AuthError::Secret("is not JSON with \"username\" and \"password\" (as ECS keeps it)".into())
    })?;
    Ok(Credentials {
        username: s.username,
        password: s.password,
    })
}

/// The login for `registry` from the file at `path`: none when the file is absent; refused
/// when anyone but root could write or read it.
pub fn from_file(path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let shown = path.display().to_string();
    let bytes = crate::fsutil::read_root_only(path, 1 << 20).map_err(|why| AuthError::File {
        path: shown.clone(),
        why,
    })?;
    match bytes {
        Some(b) => from_docker_config(&b, registry, &shown),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_login_output_is_read_for_its_registry() {
        let cfg = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},
            "registry.test:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#;
        let c = from_docker_config(cfg, "registry.test:5000", "f")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("user", "pa:ss")
        );
        let hub = from_docker_config(cfg, "docker.io", "f").unwrap().unwrap();
        assert_eq!(hub.username, "hub");
        assert_eq!(from_docker_config(cfg, "other.test", "f").unwrap(), None);
    }

    #[test]
    fn a_broken_entry_is_named_and_its_secret_never_shown() {
        let cfg = br#"{"auths":{"r.test":{"auth":"!!notbase64"}}}"#;
        let e = from_docker_config(cfg, "r.test", "/etc/berth/registry-auth.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.test") && e.contains("registry-auth.json"),
            "{e}"
        );
        assert!(!e.contains("notbase64"), "{e}");
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn an_ecs_repository_secret_is_read() {
        let c = from_secret(r#"{"username":"u","password":"p"}"#).unwrap();
        assert_eq!(c.password, "p");
        let e = from_secret("hunter2").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_login_file_others_can_read_is_refused_and_a_missing_one_is_none() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        assert_eq!(from_file(&d.path().join("absent.json"), "r.test"), Ok(None));
        let p = d.path().join("auth.json");
        std::fs::write(&p, br#"{"auths":{}}"#).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = from_file(&p, "r.test").unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(from_file(&link, "r.test").is_err());
    }
}
