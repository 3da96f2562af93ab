//! Does this host give berth a usable cgroup v2 tree? One function, fake-rootable, whose error
//! is the one line an operator needs: what is missing and how to get it.

use std::path::{Path, PathBuf};

/// Controllers without which berth cannot enforce ECS reservations.
pub const REQUIRED_CONTROLLERS: [&str; 2] = ["cpu", "memory"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostCheckError {
    #[error(
        "cgroup v2 is not mounted at {mount} (this host uses the legacy or hybrid cgroup v1 layout); \
         boot with systemd.unified_cgroup_hierarchy=1 on the kernel command line"
    )]
    NotUnified { mount: PathBuf },
    #[error(
        "the {} controller(s) are not available in cgroup {cgroup} (it has: {}); look for \
         cgroup_disable= on the kernel command line",
        missing.join(", "),
        if available.is_empty() { "none".to_string() } else { available.join(" ") }
    )]
    MissingControllers {
        cgroup: PathBuf,
        missing: Vec<String>,
        available: Vec<String>,
    },
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
}

/// Checks that `mount` is a cgroup v2 mount and that `cgroup` (relative to it) may use the
/// required controllers.
pub fn check_host(mount: &Path, cgroup: &Path) -> Result<(), HostCheckError> {
    if !mount.join("cgroup.controllers").is_file() {
        return Err(HostCheckError::NotUnified {
            mount: mount.to_owned(),
        });
    }
    let dir = mount.join(cgroup.strip_prefix("/").unwrap_or(cgroup));
    let file = dir.join("cgroup.controllers");
    let text = std::fs::read_to_string(&file).map_err(|e| HostCheckError::Unreadable {
        path: file.clone(),
        message: e.to_string(),
    })?;
    let available: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
    let missing: Vec<String> = REQUIRED_CONTROLLERS
        .iter()
        .filter(|c| !available.iter().any(|a| a == *c))
        .map(|c| c.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(HostCheckError::MissingControllers {
            cgroup: dir,
            missing,
            available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root_controllers: Option<&str>, own: &str, own_controllers: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        if let Some(c) = root_controllers {
            std::fs::write(d.path().join("cgroup.controllers"), c).unwrap();
        }
        let own_dir = d.path().join(own);
        std::fs::create_dir_all(&own_dir).unwrap();
        std::fs::write(own_dir.join("cgroup.controllers"), own_controllers).unwrap();
        d
    }

    #[test]
    fn v1_or_hybrid_host_is_refused_with_the_boot_option() {
        let d = fake(None, "system.slice/berthd.service", "");
        let err = check_host(d.path(), Path::new("/system.slice/berthd.service")).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("cgroup v2 is not mounted"), "{line}");
        assert!(
            line.contains("systemd.unified_cgroup_hierarchy=1"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn missing_memory_controller_is_named() {
        let d = fake(
            Some("cpu io memory pids"),
            "system.slice/berthd.service",
            "cpu pids\n",
        );
        let err = check_host(d.path(), Path::new("/system.slice/berthd.service")).unwrap_err();
        assert_eq!(
            err,
            HostCheckError::MissingControllers {
                cgroup: d.path().join("system.slice/berthd.service"),
                missing: vec!["memory".into()],
                available: vec!["cpu".into(), "pids".into()],
            }
        );
        let line = err.to_string();
        assert!(
            line.contains("memory controller(s) are not available"),
            "{line}"
        );
        assert!(line.contains("cgroup_disable="), "{line}");
    }

    #[test]
    fn full_v2_host_passes() {
        let d = fake(
            Some("cpuset cpu io memory pids"),
            "system.slice/berthd.service",
            "cpu io memory pids",
        );
        check_host(d.path(), Path::new("/system.slice/berthd.service")).unwrap();
    }
}
