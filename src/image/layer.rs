//! Unpacking one layer tarball into its own directory, once, as an overlayfs lower layer:
//! a whiteout `.wh.NAME` becomes the character device 0:0 overlayfs reads as "deleted", and
//! an opaque marker `.wh..wh..opq` becomes the `trusted.overlay.opaque` xattr on its directory.
//! Needs root (device nodes, ownership), which berthd has.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read layer {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {path} is zstd-compressed, which berth cannot unpack yet; re-export the image with gzip or uncompressed layers (skopeo copy --dest-compress-format gzip)")]
    Zstd { path: PathBuf },
    #[error("layer {layer}: cannot unpack {entry}")]
    Entry {
        layer: PathBuf,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: entry {entry} leaves the layer directory")]
    Escapes { layer: PathBuf, entry: String },
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the (optionally gzip-compressed) layer tarball at `blob` into `dest`, which must not
/// exist yet; a half-written unpack never appears at `dest` (it is built beside and renamed).
pub fn unpack(blob: &Path, dest: &Path) -> Result<(), LayerError> {
    let read_err = |source| LayerError::Read {
        path: blob.to_owned(),
        source,
    };
    let mut file = BufReader::new(File::open(blob).map_err(read_err)?);
    let mut magic = [0u8; 4];
    let n = read_prefix(&mut file, &mut magic).map_err(read_err)?;
    let file = File::open(blob).map_err(read_err)?;
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(GzDecoder::new(BufReader::new(file))),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            return Err(LayerError::Zstd {
                path: blob.to_owned(),
            })
        }
        _ => Box::new(BufReader::new(file)),
    };
    let tmp = dest.with_extension("unpacking");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(read_err)?;
    }
    std::fs::create_dir_all(&tmp).map_err(read_err)?;
    unpack_stream(reader, &tmp, blob)?;
    std::fs::rename(&tmp, dest).map_err(read_err)
}

fn read_prefix(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn unpack_stream(reader: impl Read, dest: &Path, blob: &Path) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|source| LayerError::Read {
        path: blob.to_owned(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| LayerError::Read {
            path: blob.to_owned(),
            source,
        })?;
        let raw = entry.path().map(|p| p.into_owned()).unwrap_or_default();
        let shown = raw.display().to_string();
        let entry_err = |source| LayerError::Entry {
            layer: blob.to_owned(),
            entry: shown.clone(),
            source,
        };
        let Some(rel) = contained(&raw) else {
            return Err(LayerError::Escapes {
                layer: blob.to_owned(),
                entry: shown,
            });
        };
        if rel.as_os_str().is_empty() {
            // The layer's root ("./"): the directory itself, already made.
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
        if name == OPAQUE {
            std::fs::create_dir_all(&parent).map_err(entry_err)?;
            xattr::set(&parent, "trusted.overlay.opaque", b"y").map_err(entry_err)?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            std::fs::create_dir_all(&parent).map_err(entry_err)?;
            whiteout(&parent.join(hidden)).map_err(entry_err)?;
        } else {
            entry.unpack_in(dest).map_err(entry_err)?;
        }
    }
    Ok(())
}

/// The path inside the layer (empty for its root), or None when it would leave it (`..`).
fn contained(raw: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn whiteout(path: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    if path.symlink_metadata().is_ok() {
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_gzip_layers_unpack_the_same() {
        let d = tempfile::tempdir().unwrap();
        let data = crate::image::tests::tar_of(&[("etc/hostname", "box\n"), ("./bin/sh", "#!")]);
        std::fs::write(d.path().join("plain"), &data).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        std::fs::write(d.path().join("gz"), gz.finish().unwrap()).unwrap();
        for name in ["plain", "gz"] {
            let out = d.path().join(format!("{name}.out"));
            unpack(&d.path().join(name), &out).unwrap();
            assert_eq!(
                std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
                "box\n"
            );
            assert!(out.join("bin/sh").exists());
        }
    }

    #[test]
    fn zstd_layer_is_refused_with_advice() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("z"), [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        let e = unpack(&d.path().join("z"), &d.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("zstd"), "{e}");
        assert!(!d.path().join("out").exists());
    }

    #[test]
    fn parent_dir_entries_are_refused() {
        assert_eq!(contained(Path::new("../etc/passwd")), None);
        assert_eq!(contained(Path::new("./")), Some(PathBuf::new()));
        assert_eq!(
            contained(Path::new("/./usr/bin")),
            Some(PathBuf::from("usr/bin"))
        );
    }
}
