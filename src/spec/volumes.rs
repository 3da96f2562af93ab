//! `volumes` of a task and the `mountPoints` and `volumesFrom` of its containers, validated
//! into where each volume's data lives and where each container sees it.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{Map, Value};

use super::walk::{self, join, Report};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeSource {
    /// `host.sourcePath`: a directory of the host's, bound as it is.
    HostPath(String),
    /// No source (`host: {}`, or `dockerVolumeConfiguration` scope task): an empty directory
    /// of the task's, shared by its containers and removed with it.
    Task,
    /// `dockerVolumeConfiguration` with `driverOpts.type` tmpfs: the same, in memory.
    TaskTmpfs,
    /// `dockerVolumeConfiguration` scope shared: a directory berth keeps under its state
    /// directory by the volume's name, outliving the task.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
    /// `configuredAtLaunch`: ECS gives the volume (an EBS volume) at RunTask. Registered as
    /// ECS registers it; a task of it is refused at RunTask, since one host has no EBS.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub configured_at_launch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: String,
    pub read_only: bool,
}

fn source(r: &mut Report, v: &Map<String, Value>, p: &str) -> VolumeSource {
    if let Some(host) = walk::get(v, "host").and_then(Value::as_object) {
        return match walk::string(r, host, &join(p, "host"), "sourcePath") {
            Some(sp) if !sp.starts_with('/') => {
                r.problem(
                    join(p, "host.sourcePath"),
                    format!("\"{sp}\" is not an absolute Linux path"),
                );
                VolumeSource::Task
            }
            Some(sp) => VolumeSource::HostPath(sp),
            None => VolumeSource::Task,
        };
    }
    let Some(dv) = walk::get(v, "dockerVolumeConfiguration").and_then(Value::as_object) else {
        return VolumeSource::Task;
    };
    let dp = join(p, "dockerVolumeConfiguration");
    match walk::string(r, dv, &dp, "driver").as_deref() {
        None | Some("local") => {}
        Some(other) => r.problem(
            join(&dp, "driver"),
            format!("\"{other}\": only the local driver exists on a berth host"),
        ),
    }
    let tmpfs = walk::get(dv, "driverOpts")
        .and_then(Value::as_object)
        .and_then(|o| o.get("type"))
        .and_then(Value::as_str)
        == Some("tmpfs");
    match walk::string(r, dv, &dp, "scope").as_deref() {
        Some("shared") => VolumeSource::Shared,
        None | Some("task") if tmpfs => VolumeSource::TaskTmpfs,
        None | Some("task") => VolumeSource::Task,
        Some(other) => {
            r.problem(
                join(&dp, "scope"),
                format!("\"{other}\" must be task or shared"),
            );
            VolumeSource::Task
        }
    }
}

/// The task's volumes, and their names for the containers' references.
pub fn task_volumes(r: &mut Report, obj: &Map<String, Value>) -> (Vec<Volume>, HashSet<String>) {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (p, v) in walk::objects(r, obj, "", "volumes") {
        for key in [
            "efsVolumeConfiguration",
            "fsxWindowsFileServerVolumeConfiguration",
        ] {
            if walk::get(v, key).is_some() {
                r.problem(join(&p, key), "needs an AWS file system that one host cannot mount; use a host volume instead");
            }
        }
        let source = source(r, v, &p);
        let configured_at_launch = walk::boolean(r, v, &p, "configuredAtLaunch").unwrap_or(false);
        match walk::string(r, v, &p, "name") {
            Some(n) if !names.insert(n.clone()) => r.problem(
                join(&p, "name"),
                format!("volume \"{n}\" is declared twice"),
            ),
            // A task or shared volume is a directory by this name.
            Some(n) if !crate::names::is_ecs_name(&n) => r.problem(
                join(&p, "name"),
                format!("\"{n}\" must be 1-255 letters, digits, hyphens or underscores"),
            ),
            Some(name) => out.push(Volume {
                name,
                source,
                configured_at_launch,
            }),
            None => r.problem(join(&p, "name"), "is required"),
        }
    }
    (out, names)
}

pub fn mount_points(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for (p, m) in walk::objects(r, c, path, "mountPoints") {
        let container_path = walk::string(r, m, &p, "containerPath");
        match &container_path {
            Some(cp) if !cp.starts_with('/') => r.problem(join(&p, "containerPath"), format!("\"{cp}\" is not an absolute Linux path (a Windows task definition cannot run on a Linux host)")),
            None => r.problem(join(&p, "containerPath"), "is required"),
            _ => {}
        }
        let source_volume = walk::string(r, m, &p, "sourceVolume");
        if source_volume.is_none() {
            r.problem(join(&p, "sourceVolume"), "is required");
        }
        let read_only = walk::boolean(r, m, &p, "readOnly").unwrap_or(false);
        if let (Some(source_volume), Some(container_path)) = (source_volume, container_path) {
            out.push(MountPoint {
                source_volume,
                container_path,
                read_only,
            });
        }
    }
    out
}

pub fn volumes_from(r: &mut Report, c: &Map<String, Value>, path: &str) -> Vec<VolumeFrom> {
    walk::objects(r, c, path, "volumesFrom")
        .into_iter()
        .filter_map(|(p, v)| {
            let source_container = walk::string(r, v, &p, "sourceContainer");
            if source_container.is_none() {
                r.problem(join(&p, "sourceContainer"), "is required");
            }
            Some(VolumeFrom {
                source_container: source_container?,
                read_only: walk::boolean(r, v, &p, "readOnly").unwrap_or(false),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes(json: &str) -> Vec<Volume> {
        let v: Value = serde_json::from_str(json).unwrap();
        let mut r = Report::default();
        let (out, _) = task_volumes(&mut r, v.as_object().unwrap());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        out
    }

    #[test]
    fn each_kind_of_volume_finds_its_source() {
        let v = volumes(
            r#"{"volumes":[
            {"name":"h","host":{"sourcePath":"/srv/data"}},
            {"name":"empty","host":{}},
            {"name":"bare"},
            {"name":"mem","dockerVolumeConfiguration":{"scope":"task","driver":"local","driverOpts":{"type":"tmpfs","device":"tmpfs"}}},
            {"name":"kept","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true,"driver":"local"}}]}"#,
        );
        let kinds: Vec<_> = v.iter().map(|v| v.source.clone()).collect();
        assert_eq!(
            kinds,
            [
                VolumeSource::HostPath("/srv/data".into()),
                VolumeSource::Task,
                VolumeSource::Task,
                VolumeSource::TaskTmpfs,
                VolumeSource::Shared,
            ]
        );
    }

    #[test]
    fn mount_points_keep_read_only() {
        let c: Value = serde_json::from_str(
            r#"{"mountPoints":[{"sourceVolume":"h","containerPath":"/d","readOnly":true}],
            "volumesFrom":[{"sourceContainer":"a"}]}"#,
        )
        .unwrap();
        let mut r = Report::default();
        let m = mount_points(&mut r, c.as_object().unwrap(), "c");
        assert_eq!(
            m,
            [MountPoint {
                source_volume: "h".into(),
                container_path: "/d".into(),
                read_only: true
            }]
        );
        let f = volumes_from(&mut r, c.as_object().unwrap(), "c");
        assert_eq!(f[0].source_container, "a");
        assert!(!f[0].read_only);
    }

    #[test]
    fn a_volume_name_that_would_climb_out_of_its_directory_is_refused() {
        let v: Value = serde_json::from_str(
            r#"{"volumes":[{"name":"../../../etc","dockerVolumeConfiguration":{"scope":"shared","autoprovision":true}},
            {"name":"a/b"},{"name":".."}]}"#,
        )
        .unwrap();
        let mut r = Report::default();
        let (_, _) = task_volumes(&mut r, v.as_object().unwrap());
        let text: Vec<String> = r.problems.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(r.problems.len(), 3, "{text:?}");
        assert!(text[0].contains("volumes[0].name"), "{text:?}");
        assert!(text[0].contains("letters, digits"), "{text:?}");
    }
}
