//! Reading an image out of an unpacked archive directory: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/`) or a `docker save` / skopeo `docker-archive` (`manifest.json`).
//! Every blob is hashed while it is read, and an OCI blob whose hash is not its name is refused.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ImageError;

/// A blob in the spool directory, with its digest when the archive named it and it was
/// verified (OCI); a docker-archive names files, whose digests are computed when stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub path: PathBuf,
    pub digest: Option<String>,
}

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

/// Finds the one image in the archive unpacked at `dir`.
pub fn find(dir: &Path) -> Result<Found, ImageError> {
    if dir.join("index.json").is_file() {
        find_oci(dir)
    } else if dir.join("manifest.json").is_file() {
        find_docker(dir)
    } else {
        Err(ImageError::UnknownFormat)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::BadJson {
        path: path.to_owned(),
        source,
    })
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::BadDigest(digest.to_string()))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn find_oci(dir: &Path) -> Result<Found, ImageError> {
    let index: OciIndex = read_json(&dir.join("index.json"))?;
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
        let path = blob_path(dir, &desc.digest)?;
        verify(&path, &desc.digest)?;
        let nested: OciIndex = read_json(&path)?;
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
    let manifest_path = blob_path(dir, &desc.digest)?;
    verify(&manifest_path, &desc.digest)?;
    let manifest: OciManifest = read_json(&manifest_path)?;
    let verified = |d: &Descriptor| -> Result<Blob, ImageError> {
        let path = blob_path(dir, &d.digest)?;
        verify(&path, &d.digest)?;
        Ok(Blob {
            path,
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

fn find_docker(dir: &Path) -> Result<Found, ImageError> {
    let entries: Vec<DockerEntry> = read_json(&dir.join("manifest.json"))?;
    let entry = entries.into_iter().next().ok_or(ImageError::Empty)?;
    let inside = |rel: &str| -> Result<Blob, ImageError> {
        if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
            return Err(ImageError::BadDigest(rel.to_string()));
        }
        Ok(Blob {
            path: dir.join(rel),
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

/// `sha256:<hex>` of the file at `path`.
pub fn digest_of(path: &Path) -> Result<String, ImageError> {
    let io_err = |source| ImageError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
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

fn verify(path: &Path, expected: &str) -> Result<(), ImageError> {
    if !path.is_file() {
        return Err(ImageError::MissingBlob(expected.to_string()));
    }
    let got = digest_of(path)?;
    if got != expected {
        return Err(ImageError::DigestMismatch {
            expected: expected.to_string(),
            got,
        });
    }
    Ok(())
}
