//! Image layers as the guest sees them: each layer directory of berth's image store made once
//! into a read-only ext4 disk image (`mkfs.ext4 -d`, no root needed, ownership, modes, xattrs
//! and overlay whiteouts kept), cached by the layer's name, and shared by every microVM that
//! uses the layer. The cloud kernel has ext4 built in and no 9p, and a disk per layer means no
//! layer is ever copied per task.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The disk of `layer` in `cache_dir`, made first when absent.
pub fn layer_disk(layer: &Path, cache_dir: &Path) -> Result<PathBuf, String> {
    let name = layer
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("layer {} has no name", layer.display()))?;
    let dir = cache_dir.join("layers");
    let disk = dir.join(format!("{name}.ext4"));
    if disk.is_file() {
        return Ok(disk);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{name}.ext4.{}", std::process::id()));
    let size_kib = disk_kib(tree_bytes(layer));
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-m", "0", "-d"])
        .arg(layer)
        .arg(&tmp)
        .arg(format!("{size_kib}k"))
        .output()
        .map_err(|e| format!("mkfs.ext4 (e2fsprogs) for layer {name}: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "mkfs.ext4 -d {}: {}",
            layer.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, &disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    Ok(disk)
}

/// Bytes a tree takes as ext4 would store it: each file rounded up to a 4 KiB block, and a
/// block per entry for its inode and directory slot.
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.len().div_ceil(4096) * 4096 + 4096;
            if m.is_dir() {
                dirs.push(e.path());
            }
        }
    }
    total
}

/// A disk size for `bytes` of content: a quarter more for ext4's own metadata, 16 MiB at the
/// least.
fn disk_kib(bytes: u64) -> u64 {
    (bytes + bytes / 4).div_ceil(1024).max(16 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_leaves_room_for_ext4() {
        assert_eq!(disk_kib(0), 16 * 1024);
        assert_eq!(disk_kib(100 << 20), 125 * 1024);
    }

    #[test]
    fn a_tree_counts_whole_blocks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("bin")).unwrap();
        std::fs::write(d.path().join("bin/sh"), vec![0u8; 5000]).unwrap();
        // bin (dir entry) + sh (two blocks + entry)
        assert_eq!(tree_bytes(d.path()), (4096 + 4096) + (8192 + 4096));
    }

    #[test]
    fn a_layer_becomes_a_cached_disk() {
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            panic!("mkfs.ext4 (e2fsprogs) is needed");
        }
        let d = tempfile::tempdir().unwrap();
        let layer = d.path().join("sha256abc");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(layer.join("etc/hostname"), "x\n").unwrap();
        let disk = layer_disk(&layer, &d.path().join("cache")).unwrap();
        assert_eq!(disk, d.path().join("cache/layers/sha256abc.ext4"));
        assert!(std::fs::metadata(&disk).unwrap().len() >= 16 << 20);
        let again = layer_disk(&layer, &d.path().join("cache")).unwrap();
        assert_eq!(disk, again);
    }
}
