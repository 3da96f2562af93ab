//! What a container borrows from the host beyond its image: device nodes
//! (`linuxParameters.devices`, found by stat of each host path) and the init binary
//! (`initProcessEnabled`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::bundle::DeviceNode;
use super::LaunchError;
use crate::spec::ContainerDefinition;

/// The container's device nodes as the host has them; a path that is not a device is an error
/// naming it.
pub fn nodes(c: &ContainerDefinition) -> Result<Vec<DeviceNode>, LaunchError> {
    c.sandbox
        .devices
        .iter()
        .map(|d| {
            let refused = |why: String| LaunchError::Host {
                container: c.name.clone(),
                what: format!("linuxParameters.devices hostPath {}: {why}", d.host_path),
            };
            let meta = std::fs::metadata(&d.host_path).map_err(|e| refused(e.to_string()))?;
            let kind = match meta.file_type() {
                t if t.is_char_device() => 'c',
                t if t.is_block_device() => 'b',
                _ => return Err(refused("not a device node on this host".into())),
            };
            let rdev = meta.rdev();
            Ok(DeviceNode {
                container_path: d.container_path.clone(),
                kind,
                major: nix::sys::stat::major(rdev),
                minor: nix::sys::stat::minor(rdev),
                access: d.access.clone(),
            })
        })
        .collect()
}

/// The init binary for a container that asks for one.
pub fn init(c: &ContainerDefinition, binary: &Path) -> Result<Option<PathBuf>, LaunchError> {
    if !c.sandbox.init_process {
        return Ok(None);
    }
    if !binary.is_file() {
        return Err(LaunchError::Host {
            container: c.name.clone(),
            what: format!(
                "linuxParameters.initProcessEnabled needs a static init at {} (install tini, or set init_binary in berthd.toml)",
                binary.display()
            ),
        });
    }
    Ok(Some(binary.to_owned()))
}
