//! What an operator lets the `berth` group ask of berthd. Without limits the group is
//! root-equivalent, as Docker's is: a member may run a privileged container, share the
//! host's namespaces, bind any host path or device. These keys of berthd's config take each
//! of those away from callers other than root; every refusal names the field and the key.
//! Pure: a task definition and the policy in, the refusals out.

use std::path::{Component, Path, PathBuf};

use super::{NetworkMode, SharedNamespace, TaskDefinition};

/// The `group_*` keys of berthd.toml, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPolicy {
    /// `group_privileged`: `privileged: true` containers, and `seccomp:unconfined`.
    pub privileged: bool,
    /// `group_host_namespaces`: `networkMode`, `pidMode` or `ipcMode` `host`.
    pub host_namespaces: bool,
    /// `group_host_paths`: host volumes only beneath these directories (unset: any).
    pub host_paths: Option<Vec<String>>,
    /// `group_devices`: `linuxParameters.devices`.
    pub devices: bool,
    /// `group_capabilities`: the capabilities `linuxParameters.capabilities.add` may name
    /// (unset: any).
    pub capabilities: Option<Vec<String>>,
    /// `group_secrets`: `secrets` read from the host's `secrets_dir` (any of them: a task may
    /// print what it is given).
    pub secrets: bool,
}

impl Default for GroupPolicy {
    /// Everything allowed: berth's group is root-equivalent until the operator says otherwise.
    fn default() -> Self {
        GroupPolicy {
            privileged: true,
            host_namespaces: true,
            host_paths: None,
            devices: true,
            capabilities: None,
            secrets: true,
        }
    }
}

/// Each thing in `def` the policy keeps from the group, as "FIELD: why (KEY)"; host paths are
/// also judged by where they lead on this host now (a link beneath an allowed directory may
/// point anywhere).
pub fn refusals(def: &TaskDefinition, p: &GroupPolicy) -> Vec<String> {
    refusals_with(def, p, &|path| std::fs::canonicalize(path).ok())
}

/// [`refusals`] with `resolve` telling where an existing host path leads.
pub fn refusals_with(
    def: &TaskDefinition,
    p: &GroupPolicy,
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Vec<String> {
    let mut out = Vec::new();
    if !p.host_namespaces {
        let host = Some(SharedNamespace::Host);
        for (field, on) in [
            ("networkMode", def.network_mode == NetworkMode::Host),
            ("pidMode", def.pid_mode == host),
            ("ipcMode", def.ipc_mode == host),
        ] {
            if on {
                out.push(format!(
                    "{field} host: the host's namespaces (group_host_namespaces)"
                ));
            }
        }
    }
    if let Some(allowed) = &p.host_paths {
        for (i, v) in def.volumes.iter().enumerate() {
            if let super::volumes::VolumeSource::HostPath(path) = &v.source {
                if let Some(why) = outside(path, allowed, resolve) {
                    out.push(format!("volumes[{i}].host.sourcePath {path}: {why}"));
                }
            }
        }
    }
    for (i, c) in def.containers.iter().enumerate() {
        let at = format!("containerDefinitions[{i}]");
        // berthd reads environment files as root: they are host paths like any other.
        if let Some(allowed) = &p.host_paths {
            for (j, path) in c.environment_files.iter().enumerate() {
                if let Some(why) = outside(path, allowed, resolve) {
                    out.push(format!("{at}.environmentFiles[{j}] {path}: {why}"));
                }
            }
        }
        if !p.privileged && c.sandbox.privileged {
            out.push(format!("{at}.privileged: (group_privileged)"));
        }
        if !p.privileged && c.sandbox.seccomp_unconfined {
            out.push(format!(
                "{at}.dockerSecurityOptions seccomp:unconfined: no seccomp filter (group_privileged)"
            ));
        }
        if !p.secrets && !c.secrets.is_empty() {
            out.push(format!(
                "{at}.secrets: the host's secret store (group_secrets)"
            ));
        }
        if !p.devices && !c.sandbox.devices.is_empty() {
            out.push(format!(
                "{at}.linuxParameters.devices: host devices (group_devices)"
            ));
        }
        if let Some(allowed) = &p.capabilities {
            for cap in &c.sandbox.cap_add {
                let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
                if !allowed
                    .iter()
                    .any(|a| a.strip_prefix("CAP_").unwrap_or(a) == bare)
                {
                    out.push(format!(
                        "{at}.linuxParameters.capabilities.add {cap}: not in group_capabilities"
                    ));
                }
            }
        }
    }
    out
}

/// Why `path` is not beneath `dirs`, as written or where it leads now; `None` when it is.
fn outside(
    path: &str,
    dirs: &[String],
    resolve: &dyn Fn(&Path) -> Option<PathBuf>,
) -> Option<String> {
    let allowed = dirs.join(", ");
    if !beneath_any(path, dirs) {
        return Some(format!("not beneath {allowed} (group_host_paths)"));
    }
    let led = resolve(Path::new(path))?;
    // The allowed directories themselves may be links (/srv -> /data): compare where each
    // leads too.
    let real: Vec<String> = dirs
        .iter()
        .map(|d| resolve(Path::new(d)).map_or_else(|| d.clone(), |r| r.display().to_string()))
        .collect();
    let shown = led.display().to_string();
    (!beneath_any(&shown, dirs) && !beneath_any(&shown, &real)).then(|| {
        format!(
            "leads to {shown} through a symbolic link, not beneath {allowed} (group_host_paths)"
        )
    })
}

/// `path` is one of `dirs` or beneath one, compared by components; a path with `..` is
/// beneath nothing.
fn beneath_any(path: &str, dirs: &[String]) -> bool {
    let p = Path::new(path);
    if p.components().any(|c| c == Component::ParentDir) || !p.is_absolute() {
        return false;
    }
    dirs.iter().any(|d| p.starts_with(Path::new(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        crate::spec::parse(json).unwrap().definition
    }

    const WIDE: &str = r#"{"family":"f","networkMode":"host","pidMode":"host",
        "volumes":[{"name":"etc","host":{"sourcePath":"/etc"}},{"name":"data","host":{"sourcePath":"/srv/data/app"}},
                   {"name":"sneaky","host":{"sourcePath":"/srv/data/../../etc"}}],
        "containerDefinitions":[{"name":"a","image":"b","memory":32,"privileged":true,
          "environmentFiles":[{"type":"s3","value":"/root/.aws/credentials"}],
          "linuxParameters":{"devices":[{"hostPath":"/dev/fuse"}],"capabilities":{"add":["NET_ADMIN","CAP_NET_BIND_SERVICE"]}}}]}"#;

    #[test]
    fn by_default_the_group_may_ask_for_anything() {
        assert!(refusals(&def(WIDE), &GroupPolicy::default()).is_empty());
    }

    #[test]
    fn each_limit_names_the_field_and_its_key() {
        let p = GroupPolicy {
            privileged: false,
            host_namespaces: false,
            host_paths: Some(vec!["/srv/data".into()]),
            devices: false,
            capabilities: Some(vec!["NET_BIND_SERVICE".into()]),
            secrets: false,
        };
        let r = refusals(&def(WIDE), &p);
        let has = |s: &str| r.iter().any(|x| x.contains(s));
        assert!(has("networkMode host") && has("pidMode host"), "{r:?}");
        assert!(!has("ipcMode"), "{r:?}");
        assert!(
            has("volumes[0].host.sourcePath /etc: not beneath /srv/data"),
            "{r:?}"
        );
        assert!(!has("volumes[1]"), "{r:?}");
        assert!(
            has("volumes[2].host.sourcePath /srv/data/../../etc"),
            "{r:?}"
        );
        assert!(
            has("containerDefinitions[0].privileged: (group_privileged)"),
            "{r:?}"
        );
        assert!(
            has("containerDefinitions[0].linuxParameters.devices"),
            "{r:?}"
        );
        assert!(
            has("capabilities.add NET_ADMIN: not in group_capabilities"),
            "{r:?}"
        );
        assert!(!has("CAP_NET_BIND_SERVICE"), "{r:?}");
        assert!(
            has("environmentFiles[0] /root/.aws/credentials: not beneath /srv/data"),
            "{r:?}"
        );
        assert_eq!(r.len(), 8, "{r:?}");
    }

    #[test]
    fn seccomp_unconfined_is_kept_from_the_group_with_privileged() {
        let d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"busybox","memory":16,"dockerSecurityOptions":["seccomp:unconfined"]}]}"#,
        );
        let strict = GroupPolicy {
            privileged: false,
            ..GroupPolicy::default()
        };
        let asks_secrets = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"busybox","memory":16,"secrets":[{"name":"S","valueFrom":"s"}]}]}"#,
        );
        let no_secrets = GroupPolicy {
            secrets: false,
            ..GroupPolicy::default()
        };
        assert_eq!(
            refusals(&asks_secrets, &no_secrets),
            ["containerDefinitions[0].secrets: the host's secret store (group_secrets)"]
        );
        assert_eq!(
            refusals(&d, &strict),
            ["containerDefinitions[0].dockerSecurityOptions seccomp:unconfined: no seccomp filter (group_privileged)"]
        );
        assert!(refusals(&d, &GroupPolicy::default()).is_empty());
    }

    #[test]
    fn a_link_beneath_an_allowed_directory_is_judged_by_where_it_leads() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let allowed = root.join("data");
        std::fs::create_dir_all(allowed.join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", allowed.join("out")).unwrap();
        std::os::unix::fs::symlink("app", allowed.join("in")).unwrap();
        // The allowed directory named through a link of its own.
        std::os::unix::fs::symlink(&allowed, root.join("alias")).unwrap();
        let json = format!(
            r#"{{"family":"f","volumes":[
                {{"name":"out","host":{{"sourcePath":"{a}/out"}}}},
                {{"name":"in","host":{{"sourcePath":"{a}/in"}}}},
                {{"name":"new","host":{{"sourcePath":"{a}/not-yet"}}}}],
              "containerDefinitions":[{{"name":"a","image":"b","memory":32}}]}}"#,
            a = allowed.display()
        );
        let mut p = GroupPolicy {
            host_paths: Some(vec![allowed.display().to_string()]),
            ..GroupPolicy::default()
        };
        let r = refusals(&def(&json), &p);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("volumes[0].host.sourcePath")
                && r[0].contains("leads to /etc through a symbolic link"),
            "{r:?}"
        );
        p.host_paths = Some(vec![root.join("alias").display().to_string()]);
        let json = json.replace(
            &allowed.display().to_string(),
            &root.join("alias").display().to_string(),
        );
        let r = refusals(&def(&json), &p);
        assert_eq!(
            r.len(),
            1,
            "an allowed directory that is a link still allows: {r:?}"
        );
    }
}
