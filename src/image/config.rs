//! The part of an OCI / Docker image configuration berth applies under a container
//! definition: `Entrypoint`, `Cmd`, `Env`, `WorkingDir`, `User`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// The `config` object of an image configuration blob, as both formats spell it.
#[derive(Debug, Default, Deserialize)]
struct RawRuntimeConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawImageConfig {
    #[serde(default)]
    config: Option<RawRuntimeConfig>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
}

/// Platform and runtime configuration read from an image configuration blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedConfig {
    pub config: ImageConfig,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

pub fn parse(bytes: &[u8]) -> Result<ParsedConfig, serde_json::Error> {
    let raw: RawImageConfig = serde_json::from_slice(bytes)?;
    let rc = raw.config.unwrap_or_default();
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(ParsedConfig {
        config: ImageConfig {
            entrypoint: rc.entrypoint,
            cmd: rc.cmd,
            env: rc.env.unwrap_or_default(),
            working_dir: nonempty(rc.working_dir),
            user: nonempty(rc.user),
        },
        os: raw.os,
        architecture: raw.architecture,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_config_with_nulls() {
        let p = parse(
            br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":null,
            "Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"","User":""}}"#,
        )
        .unwrap();
        assert_eq!(p.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(p.config.entrypoint, None);
        assert_eq!(p.config.working_dir, None);
        assert_eq!(p.config.user, None);
        assert_eq!(p.architecture.as_deref(), Some("amd64"));
    }

    #[test]
    fn config_without_runtime_section_is_empty() {
        let p = parse(br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert_eq!(p.config, ImageConfig::default());
    }
}
