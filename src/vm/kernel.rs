//! The guest kernel: Debian's `linux-image-cloud-amd64` unpacked into a directory
//! (`boot/vmlinuz-*`, `lib/modules/<release>/`), and the modules the agent loads, in
//! dependency order. The package's `modules.dep` is made by its install script, which an
//! unpacked package never ran, so dependencies are read from each module's own `depends=`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The documented way to get a kernel where berth looks for one: the packages install it as
/// this command; a source tree has it as `packaging/fetch-guest-kernel`.
pub const FETCH_COMMAND: &str = "berth-fetch-guest-kernel";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "no guest kernel in {dir} (boot/vmlinuz-* and lib/modules/): microVM tasks need Debian's \
         linux-image-cloud-amd64 unpacked there; run `{FETCH_COMMAND} {dir}` \
         (packaging/fetch-guest-kernel in berth's source)"
    )]
    Missing { dir: PathBuf },
    #[error("guest kernel {release}: module {module} not found under {dir}")]
    NoModule {
        release: String,
        module: String,
        dir: PathBuf,
    },
    #[error("guest kernel: cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A kernel image and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestKernel {
    pub image: PathBuf,
    pub release: String,
    pub modules_dir: PathBuf,
}

/// The kernel unpacked in `dir`. With several releases there, the newest name wins.
pub fn find(dir: &Path) -> Result<GuestKernel, KernelError> {
    let missing = || KernelError::Missing {
        dir: dir.to_owned(),
    };
    let boot = std::fs::read_dir(dir.join("boot")).map_err(|_| missing())?;
    let mut releases: Vec<String> = boot
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .filter(|r| dir.join("lib/modules").join(r).is_dir())
        .collect();
    releases.sort();
    let release = releases.pop().ok_or_else(missing)?;
    Ok(GuestKernel {
        image: dir.join("boot").join(format!("vmlinuz-{release}")),
        modules_dir: dir.join("lib/modules").join(&release),
        release,
    })
}

impl GuestKernel {
    /// Paths of `wanted` and everything they depend on, each after its dependencies. A module
    /// built into the kernel (`modules.builtin`) needs no file and is left out.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<PathBuf>, KernelError> {
        let files = self.module_files()?;
        let builtin = self.builtin();
        let mut order: Vec<String> = Vec::new();
        let mut visiting = Vec::new();
        for w in wanted {
            self.visit(&normal(w), &files, &builtin, &mut order, &mut visiting)?;
        }
        Ok(order.iter().map(|m| files[m].clone()).collect())
    }

    fn visit(
        &self,
        module: &str,
        files: &BTreeMap<String, PathBuf>,
        builtin: &[String],
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) -> Result<(), KernelError> {
        if order.iter().any(|m| m == module) || visiting.iter().any(|m| m == module) {
            return Ok(());
        }
        let Some(path) = files.get(module) else {
            if builtin.iter().any(|b| b == module) {
                return Ok(());
            }
            return Err(KernelError::NoModule {
                release: self.release.clone(),
                module: module.to_string(),
                dir: self.modules_dir.clone(),
            });
        };
        let bytes = std::fs::read(path).map_err(|source| KernelError::Io {
            path: path.clone(),
            source,
        })?;
        visiting.push(module.to_string());
        for dep in depends(&bytes) {
            self.visit(&dep, files, builtin, order, visiting)?;
        }
        visiting.pop();
        order.push(module.to_string());
        Ok(())
    }

    /// Every `.ko` under the release's `kernel/`, by module name.
    fn module_files(&self) -> Result<BTreeMap<String, PathBuf>, KernelError> {
        let mut found = BTreeMap::new();
        let mut dirs = vec![self.modules_dir.join("kernel")];
        while let Some(d) = dirs.pop() {
            let rd = std::fs::read_dir(&d).map_err(|source| KernelError::Io {
                path: d.clone(),
                source,
            })?;
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                    if let Some(stem) = name.strip_suffix(".ko") {
                        found.insert(normal(stem), p.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    fn builtin(&self) -> Vec<String> {
        std::fs::read_to_string(self.modules_dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(normal))
            .collect()
    }
}

/// Module names use `_` where file names may use `-`.
fn normal(name: &str) -> String {
    name.replace('-', "_")
}

/// The `depends=` entry of a module's `.modinfo` (NUL-separated `key=value` strings).
pub fn depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(normal)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(dir: &Path, rel: &str, deps: &str) {
        let p = dir.join("lib/modules/6.1.0-9-cloud-amd64/kernel").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let body = format!("\x7fELF...\0license=GPL\0depends={deps}\0vermagic=6.1\0");
        std::fs::write(p, body).unwrap();
    }

    fn unpacked() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("boot")).unwrap();
        std::fs::write(d.path().join("boot/vmlinuz-6.1.0-9-cloud-amd64"), b"bz").unwrap();
        module(d.path(), "drivers/virtio/virtio_ring.ko", "");
        module(d.path(), "drivers/virtio/virtio.ko", "virtio_ring");
        module(
            d.path(),
            "drivers/virtio/virtio_mmio.ko",
            "virtio,virtio_ring",
        );
        module(
            d.path(),
            "drivers/char/virtio_console.ko",
            "virtio,virtio_ring",
        );
        module(d.path(), "fs/erofs/erofs.ko", "libcrc32c");
        std::fs::write(
            d.path()
                .join("lib/modules/6.1.0-9-cloud-amd64/modules.builtin"),
            "kernel/lib/libcrc32c.ko\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn a_module_comes_after_what_it_depends_on() {
        let d = unpacked();
        let k = find(d.path()).unwrap();
        assert_eq!(k.release, "6.1.0-9-cloud-amd64");
        let order = k.load_order(&["virtio_mmio", "virtio_console"]).unwrap();
        let names: Vec<String> = order
            .iter()
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["virtio_ring", "virtio", "virtio_mmio", "virtio_console"]
        );
    }

    #[test]
    fn a_builtin_dependency_needs_no_file() {
        let d = unpacked();
        let order = find(d.path()).unwrap().load_order(&["erofs"]).unwrap();
        assert_eq!(order.len(), 1);
    }

    #[test]
    fn a_missing_kernel_names_the_directory_and_the_fix() {
        let d = tempfile::tempdir().unwrap();
        let e = find(d.path()).unwrap_err().to_string();
        assert!(e.contains(&d.path().display().to_string()), "{e}");
        assert!(e.contains(FETCH_COMMAND), "{e}");
    }

    #[test]
    fn a_missing_module_is_named() {
        let d = unpacked();
        let e = find(d.path()).unwrap().load_order(&["vsock"]).unwrap_err();
        assert!(e.to_string().contains("module vsock not found"), "{e}");
    }

    #[test]
    fn depends_reads_the_modinfo_entry() {
        assert_eq!(
            depends(b"x\0alias=y\0depends=a,b-c\0name=z\0"),
            ["a", "b_c"]
        );
        assert!(depends(b"x\0depends=\0").is_empty());
        assert!(depends(b"nothing here").is_empty());
    }
}
