//! Reading an image out of an unpacked archive directory: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`) or a `docker save` / skopeo `docker-archive` (`manifest.json`).
//! Every blob is hashed while it is read, and an OCI blob whose hash is not its name is refused.

use std::fs::File;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ImageError;
use crate::beneath;

/// A blob in the spool directory (`path` relative to it), with the digest the archive names
/// it by (OCI), checked when it is stored; a docker-archive names files, whose digests are
/// computed when stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub path: PathBuf,
    pub digest: Option<String>,
}

/// The most of an index, manifest or image config berth reads (they are a few KiB).
pub const JSON_LIMIT: u64 = 16 << 20;

/// An image found in an archive, its blobs still in the spool directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The name the archive gives the image, if it gives one with a repository.
    pub name: Option<String>,
    pub config: Blob,
    /// Lowest layer first.
    pub layers: Vec<Blob>,
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    annotations: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct OciManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Finds the one image in the archive unpacked beneath `dir` (the spool, opened), reading
/// nothing through a link the archive made.
pub fn find(dir: BorrowedFd<'_>) -> Result<Found, ImageError> {
    let present = |name: &str| beneath::open_file(dir, Path::new(name)).is_ok();
    if present("index.json") {
        find_oci(dir)
    } else if present("manifest.json") {
        find_docker(dir)
    } else {
        Err(ImageError::UnknownFormat)
    }
}

/// The bytes of the spooled file `rel`: a regular file beneath the spool, bounded.
pub fn read_spooled(dir: BorrowedFd<'_>, rel: &Path) -> Result<Vec<u8>, ImageError> {
    beneath::read_bounded(dir, rel, JSON_LIMIT).map_err(|source| ImageError::Archive {
        path: rel.to_owned(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(rel: &Path, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::BadJson {
        path: rel.to_owned(),
        source,
    })
}

/// A JSON blob named by its digest, checked against the bytes that are parsed.
fn read_verified<T: serde::de::DeserializeOwned>(
    dir: BorrowedFd<'_>,
    digest: &str,
) -> Result<T, ImageError> {
    let rel = blob_path(digest)?;
    let bytes = match beneath::read_bounded(dir, &rel, JSON_LIMIT) {
        Err(beneath::BeneathError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(ImageError::MissingBlob(digest.to_string()))
        }
        other => other.map_err(|source| ImageError::Archive {
            path: rel.clone(),
            source,
        })?,
    };
    check(digest, &format!("sha256:{:x}", Sha256::digest(&bytes)))?;
    parse(&rel, &bytes)
}

/// The spool-relative path of the blob `digest` names.
fn blob_path(digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::BadDigest(digest.to_string()))?;
    Ok(Path::new("blobs/sha256").join(hex))
}

fn find_oci(dir: BorrowedFd<'_>) -> Result<Found, ImageError> {
    let rel = Path::new("index.json");
    let index: OciIndex = parse(rel, &read_spooled(dir, rel)?)?;
    let mut desc = index
        .manifests
        .into_iter()
        .next()
        .ok_or(ImageError::Empty)?;
    let mut name = desc
        .annotations
        .as_ref()
        .and_then(|a| a.get(REF_NAME).cloned());
    // A multi-platform index: take the linux/amd64 manifest from it.
    if desc
        .media_type
        .as_deref()
        .is_some_and(|m| m.ends_with("image.index.v1+json") || m.contains("manifest.list"))
    {
        let nested: OciIndex = read_verified(dir, &desc.digest)?;
        desc = nested
            .manifests
            .into_iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .ok_or(ImageError::NoPlatform)?;
        name = name.or_else(|| desc.annotations.and_then(|mut a| a.remove(REF_NAME)));
    }
    let manifest: OciManifest = read_verified(dir, &desc.digest)?;
    // Checked when stored, hashed from the descriptor they are then read from.
    let verified = |d: &Descriptor| -> Result<Blob, ImageError> {
        Ok(Blob {
            path: blob_path(&d.digest)?,
            digest: Some(d.digest.clone()),
        })
    };
    let config = verified(&manifest.config)?;
    let layers = manifest
        .layers
        .iter()
        .map(verified)
        .collect::<Result<_, _>>()?;
    Ok(Found {
        // A bare tag ("latest") names no repository.
        name: name.filter(|n| n.contains(':') || n.contains('/')),
        config,
        layers,
    })
}

fn find_docker(dir: BorrowedFd<'_>) -> Result<Found, ImageError> {
    let rel = Path::new("manifest.json");
    let entries: Vec<DockerEntry> = parse(rel, &read_spooled(dir, rel)?)?;
    let entry = entries.into_iter().next().ok_or(ImageError::Empty)?;
    let inside = |rel: &str| -> Result<Blob, ImageError> {
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            return Err(ImageError::BadDigest(rel.to_string()));
        }
        Ok(Blob {
            path: PathBuf::from(rel),
            digest: None,
        })
    };
    Ok(Found {
        name: entry.repo_tags.and_then(|t| t.into_iter().next()),
        config: inside(&entry.config)?,
        layers: entry
            .layers
            .iter()
            .map(|l| inside(l))
            .collect::<Result<_, _>>()?,
    })
}

/// `sha256:<hex>` of what `f` holds from where it stands; `shown` names it in errors.
pub fn digest_of(f: &mut File, shown: &Path) -> Result<String, ImageError> {
    let io_err = |source| ImageError::Io {
        action: "read",
        path: shown.to_owned(),
        source,
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{:x}", h.finalize()))
}

/// A blob whose content hashed to `got` where `expected` was named.
pub fn check(expected: &str, got: &str) -> Result<(), ImageError> {
    if got != expected {
        return Err(ImageError::DigestMismatch {
            expected: expected.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}
