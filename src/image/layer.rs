//! Unpacking one layer tarball into its own directory, once, as an overlayfs lower layer:
//! a whiteout `.wh.NAME` becomes the character device 0:0 overlayfs reads as "deleted", and
//! an opaque marker `.wh..wh..opq` becomes the `trusted.overlay.opaque` xattr on its directory.
//! Needs root (device nodes, ownership), which berthd has.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use xattr::FileExt;

use crate::beneath::{self, BeneathError};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read layer {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: cannot unpack {entry}")]
    Entry {
        layer: PathBuf,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: entry {entry} leaves the layer directory")]
    Escapes { layer: PathBuf, entry: String },
    #[error("layer {layer}: entry {entry} is refused")]
    Refused {
        layer: PathBuf,
        entry: String,
        #[source]
        source: BeneathError,
    },
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the (optionally gzip- or zstd-compressed) layer tarball `blob` (read from this descriptor,
/// the one its digest was computed from; `shown` names it in errors) into `dest`, which must
/// not exist yet; a half-written unpack never appears at `dest` (it is built beside and renamed).
pub fn unpack(mut blob: File, shown: &Path, dest: &Path) -> Result<(), LayerError> {
    let read_err = |source| LayerError::Read {
        path: shown.to_owned(),
        source,
    };
    blob.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let n = read_prefix(&mut blob, &mut magic).map_err(read_err)?;
    blob.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let reader: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(GzDecoder::new(BufReader::new(blob))),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            zstd::stream::read::Decoder::with_buffer(BufReader::new(blob)).map_err(read_err)?,
        ),
        _ => Box::new(BufReader::new(blob)),
    };
    let tmp = dest.with_extension("unpacking");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(read_err)?;
    }
    std::fs::create_dir_all(&tmp).map_err(read_err)?;
    let result = unpack_stream(reader, &tmp, shown);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
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
    let read_err = |source| LayerError::Read {
        path: blob.to_owned(),
        source,
    };
    let root = beneath::open_root(dest).map_err(|e| read_err(std::io::Error::other(e)))?;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
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
        let parent = rel.parent().unwrap_or(Path::new(""));
        // Whiteouts are berth's own writes: beneath the layer, through no link the layer made.
        let refused = |source: BeneathError| LayerError::Refused {
            layer: blob.to_owned(),
            entry: shown.clone(),
            source,
        };
        if name == OPAQUE {
            let dir = File::from(beneath::dir(root.as_fd(), parent, true).map_err(refused)?);
            dir.set_xattr("trusted.overlay.opaque", b"y")
                .map_err(entry_err)?;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let dir = beneath::dir(root.as_fd(), parent, true).map_err(refused)?;
            whiteout(dir.as_fd(), hidden).map_err(entry_err)?;
        } else {
            // tar refuses an entry whose parent (links resolved) is outside `dest`, and a
            // hard link whose target is.
            entry.unpack_in(dest).map_err(entry_err)?;
        }
    }
    Ok(())
}

/// The path inside the layer (empty for its root), or None when it would leave it (`..`).
fn contained(raw: &Path) -> Option<PathBuf> {
    beneath::components(raw)
        .ok()
        .map(|parts| parts.into_iter().collect())
}

/// `name` in `dir` becomes the 0:0 character device overlayfs reads as "deleted".
fn whiteout(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    use nix::sys::stat::{mknodat, Mode, SFlag};
    beneath::remove(dir, std::ffi::OsStr::new(name))?;
    mknodat(
        Some(dir.as_raw_fd()),
        name,
        SFlag::S_IFCHR,
        Mode::empty(),
        0,
    )
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests;
