//! The agent's initramfs: berth's agent as `/init`, the shared libraries it links (as the host's
//! `ldd` resolves them, at the same paths), and the kernel modules it loads, in order. Built
//! once per (agent binary, kernel release, module list) and cached under a name made of their
//! hash, so a changed agent never boots from a stale archive.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::agent::MODULES_DIR;
use super::initramfs::Initramfs;
use super::kernel::{GuestKernel, KernelError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("agent initramfs: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent initramfs: cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent initramfs: `ldd {agent}` failed: {why}")]
    Ldd { agent: PathBuf, why: String },
}

/// The modules a task's VM loads: the virtio-mmio transport, the agent's serial port, the
/// layer disks, and overlayfs to join them (ext4 is built in).
pub const GUEST_MODULES: &[&str] = &["virtio_mmio", "virtio_console", "virtio_blk", "overlay"];

/// What goes into the archive.
pub struct AgentImage<'a> {
    pub agent: &'a Path,
    pub kernel: &'a GuestKernel,
    pub modules: &'a [&'a str],
}

/// The cached initramfs in `cache_dir` for `image`, built first when absent.
pub fn cached(image: &AgentImage<'_>, cache_dir: &Path) -> Result<PathBuf, ImageError> {
    let agent = std::fs::read(image.agent).map_err(|source| ImageError::Read {
        path: image.agent.to_owned(),
        source,
    })?;
    let mut h = Sha256::new();
    h.update(&agent);
    h.update(image.kernel.release.as_bytes());
    for m in image.modules {
        h.update(b"\0");
        h.update(m.as_bytes());
    }
    let key: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = cache_dir.join(format!("agent-{key}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    let write_err = |p: &Path| {
        let p = p.to_owned();
        move |source| ImageError::Write { path: p, source }
    };
    std::fs::create_dir_all(cache_dir).map_err(write_err(cache_dir))?;
    let bytes = build(image, &agent)?;
    let tmp = cache_dir.join(format!(".agent-{key}.cpio.{}", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(write_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(write_err(&path))?;
    Ok(path)
}

fn build(image: &AgentImage<'_>, agent: &[u8]) -> Result<Vec<u8>, ImageError> {
    let modules = image.kernel.load_order(image.modules)?;
    let libs = shared_libraries(image.agent)?;
    let io = |source| ImageError::Write {
        path: image.agent.to_owned(),
        source,
    };
    let mut r = Initramfs::new(Vec::new());
    let mut dirs = BTreeSet::new();
    for d in ["/dev", "/proc", "/sys", "/run", "/tmp", MODULES_DIR] {
        add_dirs(&mut r, &mut dirs, Path::new(d)).map_err(io)?;
    }
    // The kernel opens it for PID 1's stdio before running /init.
    r.char_device("/dev/console", 0o600, 5, 1).map_err(io)?;
    let stripped = strip_debug(image.agent);
    r.file("/init", 0o755, stripped.as_deref().unwrap_or(agent))
        .map_err(io)?;
    for lib in &libs {
        let bytes = std::fs::read(lib).map_err(|source| ImageError::Read {
            path: lib.clone(),
            source,
        })?;
        if let Some(parent) = lib.parent() {
            add_dirs(&mut r, &mut dirs, parent).map_err(io)?;
        }
        r.file(&lib.to_string_lossy(), 0o755, &bytes).map_err(io)?;
    }
    let mut order = String::new();
    for m in &modules {
        let name = m
            .file_stem()
            .map(|s| s.to_string_lossy().replace('-', "_"))
            .unwrap_or_default();
        let bytes = std::fs::read(m).map_err(|source| ImageError::Read {
            path: m.clone(),
            source,
        })?;
        r.file(&format!("{MODULES_DIR}/{name}.ko"), 0o644, &bytes)
            .map_err(io)?;
        order.push_str(&name);
        order.push('\n');
    }
    r.file(&format!("{MODULES_DIR}/order"), 0o644, order.as_bytes())
        .map_err(io)?;
    let mut out = r.finish().map_err(io)?;
    out.flush().map_err(io)?;
    Ok(out)
}

/// `path` and its ancestors, each once, parents first.
fn add_dirs<W: Write>(
    r: &mut Initramfs<W>,
    done: &mut BTreeSet<PathBuf>,
    path: &Path,
) -> std::io::Result<()> {
    let mut chain: Vec<&Path> = path.ancestors().filter(|p| *p != Path::new("/")).collect();
    chain.reverse();
    for d in chain {
        if done.insert(d.to_owned()) {
            r.dir(&d.to_string_lossy(), 0o755)?;
        }
    }
    Ok(())
}

/// The agent without its debug sections (a debug build's are most of its size, and the guest
/// unpacks the archive into its memory); `None` when `strip` is not there.
fn strip_debug(agent: &Path) -> Option<Vec<u8>> {
    let tmp = tempfile_path(agent);
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&tmp)
        .arg(agent)
        .status()
        .is_ok_and(|s| s.success());
    let bytes = ok.then(|| std::fs::read(&tmp).ok()).flatten();
    let _ = std::fs::remove_file(&tmp);
    bytes
}

fn tempfile_path(agent: &Path) -> PathBuf {
    std::env::temp_dir().join(format!(
        "berth-agent-strip-{}-{}",
        std::process::id(),
        agent
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ))
}

/// The libraries and loader `ldd` names for `binary`, by absolute path.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Ldd {
            agent: binary.to_owned(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ImageError::Ldd {
            agent: binary.to_owned(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x00007f1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libseccomp.so.2"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
