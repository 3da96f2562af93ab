//! The task's volumes on the host — a host path as given, a directory of the task's (a tmpfs
//! when asked), or a shared directory under berth's state — and which of them each container
//! binds, its own `mountPoints` and those it takes through `volumesFrom`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::bundle::Bind;
use super::LaunchError;
use crate::spec::volumes::VolumeSource;
use crate::spec::TaskDefinition;

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LaunchError + 'a {
    move |source| LaunchError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Makes every volume's directory ready and says where each is. A task-scoped tmpfs is
/// mounted under the task directory, so the task's release unmounts it with the rest.
pub fn prepare(
    def: &TaskDefinition,
    task_dir: &Path,
    shared_dir: &Path,
) -> Result<BTreeMap<String, PathBuf>, LaunchError> {
    let mut places = BTreeMap::new();
    for v in &def.volumes {
        let dir = match &v.source {
            VolumeSource::HostPath(p) => PathBuf::from(p),
            VolumeSource::Task | VolumeSource::TaskTmpfs => task_dir
                .join("volumes")
                .join(crate::names::segment("volume", &v.name)?),
            VolumeSource::Shared => shared_dir.join(crate::names::segment("volume", &v.name)?),
        };
        // Docker and ECS make a missing host path; so does berth. (A host file binds as is.)
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(io("create the volume directory", &dir))?;
        }
        if v.source == VolumeSource::TaskTmpfs {
            mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .map_err(|e| LaunchError::Io {
                action: "mount a tmpfs volume on",
                path: dir.clone(),
                source: e.into(),
            })?;
        }
        places.insert(v.name.clone(), dir);
    }
    Ok(places)
}

/// `ipcMode` task: one `/dev/shm` for all the task's containers, as they share one IPC
/// namespace (Docker's shareable IPC gives its containers one `/dev/shm` too): a tmpfs under
/// the task directory, sized by the largest `sharedMemorySize` (Docker's 64 MiB without), that
/// each container binds. Unmounted with the task's other mounts at its release.
pub fn task_shm(def: &TaskDefinition, task_dir: &Path) -> Result<Option<PathBuf>, LaunchError> {
    if def.ipc_mode != Some(crate::spec::SharedNamespace::Task) {
        return Ok(None);
    }
    let dir = task_dir.join("shm");
    std::fs::create_dir_all(&dir).map_err(io("create the shared /dev/shm", &dir))?;
    let size = def
        .containers
        .iter()
        .filter_map(|c| c.sandbox.shm_size_mib)
        .max()
        .unwrap_or(64);
    mount(
        Some("shm"),
        &dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,size={size}m").as_str()),
    )
    .map_err(|e| LaunchError::Io {
        action: "mount the shared /dev/shm on",
        path: dir.clone(),
        source: e.into(),
    })?;
    Ok(Some(dir))
}

/// The binds of container `name`: its mountPoints, then what its volumesFrom sources bind
/// (followed through chains, each container once), read-only when either side says so.
pub fn binds(def: &TaskDefinition, name: &str, places: &BTreeMap<String, PathBuf>) -> Vec<Bind> {
    let mut out: Vec<Bind> = Vec::new();
    let mut seen = vec![name.to_string()];
    let mut queue = vec![(name.to_string(), false)];
    while let Some((current, forced_ro)) = queue.pop() {
        let Some(c) = def.containers.iter().find(|c| c.name == current) else {
            continue;
        };
        for m in &c.mount_points {
            let Some(source) = places.get(&m.source_volume) else {
                continue;
            };
            if !out.iter().any(|b| b.destination == m.container_path) {
                out.push(Bind {
                    source: source.clone(),
                    destination: m.container_path.clone(),
                    read_only: m.read_only || forced_ro,
                });
            }
        }
        for f in &c.volumes_from {
            if !seen.contains(&f.source_container) {
                seen.push(f.source_container.clone());
                queue.insert(0, (f.source_container.clone(), forced_ro || f.read_only));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_from_follows_chains_and_keeps_read_only() {
        let def = crate::spec::parse(r#"{"family":"f","volumes":[{"name":"v","host":{}},{"name":"w"}],
            "containerDefinitions":[
              {"name":"a","image":"b","memory":32,"mountPoints":[{"sourceVolume":"v","containerPath":"/data"}]},
              {"name":"c","image":"b","memory":32,"volumesFrom":[{"sourceContainer":"a","readOnly":true}],
               "mountPoints":[{"sourceVolume":"w","containerPath":"/w"}]},
              {"name":"d","image":"b","memory":32,"volumesFrom":[{"sourceContainer":"c"}]}]}"#)
            .unwrap()
            .definition;
        let places: BTreeMap<String, PathBuf> = [
            ("v".to_string(), PathBuf::from("/t/v")),
            ("w".to_string(), PathBuf::from("/t/w")),
        ]
        .into();
        let d = binds(&def, "d", &places);
        assert_eq!(d.len(), 2, "{d:?}");
        let data = d.iter().find(|b| b.destination == "/data").unwrap();
        assert!(data.read_only, "read-only through c's volumesFrom");
        assert_eq!(data.source, PathBuf::from("/t/v"));
        assert!(!d.iter().find(|b| b.destination == "/w").unwrap().read_only);
        assert!(!binds(&def, "a", &places)[0].read_only);
    }
}
