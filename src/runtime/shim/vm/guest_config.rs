//! A container's config.json as the agent gets it: berthd's, with what belongs to the host
//! taken out or pointed into the guest.

use std::path::{Path, PathBuf};

use crate::runtime::plan::ContainerPlan;
use crate::vm::guest::VOLUMES;
use crate::vm::protocol::VmContainer;

/// A container as the agent gets it: berthd's config.json with the host's specifics taken
/// out: its cgroup is the guest's, its namespaces new ones (the host's netns and holder paths
/// mean nothing inside), its task-scoped volumes in the guest's memory (shared by its
/// containers, gone with the VM), and other host-path binds (network files, the init binary)
/// left out, as the VM cannot see the host's files. Host-path volumes were refused at RunTask.
pub(super) fn guest_container(
    c: &ContainerPlan,
    task_dir: &Path,
    layers: &[(PathBuf, String)],
) -> Result<VmContainer, String> {
    let path = c.bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    guest_config(&mut config, &c.name, &task_dir.join("volumes"));
    Ok(VmContainer {
        name: c.name.clone(),
        config,
        layers: c
            .lower
            .iter()
            .rev()
            .filter_map(|l| layers.iter().find(|(p, _)| p == l).map(|(_, s)| s.clone()))
            .collect(),
        stop_timeout_secs: c.stop_timeout_secs,
    })
}

fn guest_config(config: &mut serde_json::Value, name: &str, task_volumes: &Path) {
    config["linux"]["cgroupsPath"] = format!("/berth/{name}").into();
    if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if let Some(o) = n.as_object_mut() {
                o.remove("path");
            }
        }
    }
    if let Some(mounts) = config["mounts"].as_array_mut() {
        mounts.retain_mut(|m| {
            let bind = m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            if !bind {
                return true;
            }
            let source = m["source"].as_str().map(Path::new);
            match source.and_then(|s| s.strip_prefix(task_volumes).ok()) {
                Some(volume) => {
                    m["source"] = Path::new(VOLUMES).join(volume).display().to_string().into();
                    true
                }
                None => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_config_has_the_guest_cgroup_new_namespaces_and_only_task_volumes_bound() {
        let mut c = serde_json::json!({
            "linux": {
                "cgroupsPath": "/berth.slice/berth-ab.scope/task/web",
                "namespaces": [{"type": "network", "path": "/run/berth/netns/ab"}, {"type": "mount"}]
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/berth/tasks/ab/hosts", "options": ["rbind", "ro"]},
                {"destination": "/srv", "source": "/var/lib/berth/volumes/x", "options": ["rbind"]},
                {"destination": "/data", "type": "bind", "source": "/var/lib/berth/tasks/ab/volumes/scratch", "options": ["rbind", "ro"]}
            ]
        });
        guest_config(&mut c, "web", Path::new("/var/lib/berth/tasks/ab/volumes"));
        assert_eq!(c["linux"]["cgroupsPath"], "/berth/web");
        assert_eq!(
            c["linux"]["namespaces"],
            serde_json::json!([{"type": "network"}, {"type": "mount"}])
        );
        let dests: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(dests, ["/proc", "/data"]);
        assert_eq!(c["mounts"][1]["source"], "/run/berth/volumes/scratch");
        assert_eq!(
            c["mounts"][1]["options"],
            serde_json::json!(["rbind", "ro"])
        );
    }
}
