//! berth's image store under `<state_dir>/images`: blobs kept by digest (verified on import),
//! each layer unpacked once into `layers/<hex>/`, and an index naming the images. A container's
//! root filesystem is an overlay over these shared layer directories (made by the runtime).
//!
//! Imports arrive as a tar stream (an OCI layout directory tarred by the client, a
//! `docker save` tarball or a skopeo `docker-archive:`), so berthd reads only what the caller
//! could read, or as an OCI layout that `pull` fetched from a registry into the spool: both
//! take the same checked way into the store.

pub mod cleanup;
mod config;
mod import;
mod layer;
pub mod pull;
pub mod reference;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use serde::{Deserialize, Serialize};

pub use config::ImageConfig;
pub use layer::LayerError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The caller may not give this name new content (the policy's reason).
    #[error("{0}")]
    Refused(String),
    #[error("the archive is neither an OCI image layout (no index.json) nor a docker-archive (no manifest.json)")]
    UnknownFormat,
    #[error("the archive holds no image")]
    Empty,
    #[error("the image index has no linux/amd64 image")]
    NoPlatform,
    #[error("{path} is not valid JSON")]
    BadJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the archive's {path} is refused")]
    Archive {
        path: PathBuf,
        #[source]
        source: crate::beneath::BeneathError,
    },
    #[error("{0} is not a sha256 digest berth accepts")]
    BadDigest(String),
    #[error("blob {0} is missing from the archive")]
    MissingBlob(String),
    #[error("blob {expected} is corrupt: its content hashes to {got}")]
    DigestMismatch { expected: String, got: String },
    #[error("the image is for {os}/{arch}; berth runs linux/amd64 images")]
    WrongPlatform { os: String, arch: String },
    #[error("the archive does not name its image; give one with --name NAME:TAG")]
    NoName,
    #[error("{0:?} is not a valid image name (letters, digits, . _ - / : @)")]
    BadName(String),
    #[error("no image {0} in berth's image store; pull it (`berthctl image pull`) or import it (`berthctl image import`)")]
    NotFound(String),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("the image index {path} is unreadable")]
    Index {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One named image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub name: String,
    /// Digest of the image configuration blob (the image id).
    pub id: String,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
    pub config: ImageConfig,
    /// Bytes of the blobs as imported.
    pub size: u64,
    pub imported_at: u64,
    /// Pulled from a registry (so cleanup may remove it: it can be pulled again), not imported.
    #[serde(default)]
    pub pulled: bool,
}

#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    /// Serializes imports and removals: layer directories are shared between images.
    index: Mutex<Vec<ImageRecord>>,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for d in ["blobs/sha256", "layers", "spool", "downloads"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        // Spool directories left by an import that died half-way hold nothing of value.
        let spool = root.join("spool");
        if let Ok(rd) = std::fs::read_dir(&spool) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        // A cut-off pull's bytes wait for a retry, but not for ever.
        forget_stale_downloads(
            &root.join("downloads"),
            std::time::Duration::from_secs(7 * 86400),
        );
        let path = root.join("images.json");
        let index = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ImageError::Index { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(ImageStore {
            root: root.to_owned(),
            index: Mutex::new(index),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ImageRecord>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The unpacked directory of a layer.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers").join(hex(digest))
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        self.lock().clone()
    }

    /// The image a task definition's `image` names.
    pub fn get(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let want = reference::normalize(name);
        self.lock()
            .iter()
            .find(|r| r.name == want)
            .cloned()
            .ok_or(ImageError::NotFound(want))
    }

    /// Imports the image in the tar stream `archive`, naming it `name` or the archive's name.
    /// An image of the same name is replaced.
    pub fn import(
        &self,
        archive: impl Read,
        name: Option<&str>,
        now: u64,
    ) -> Result<ImageRecord, ImageError> {
        self.import_checked(archive, name, now, &|_| Ok(()))
    }

    /// [`ImageStore::import`], asking `may_replace` before an image of the same name (known
    /// only once the archive is read, when it names itself) gets the new content.
    pub fn import_checked(
        &self,
        archive: impl Read,
        name: Option<&str>,
        now: u64,
        may_replace: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<ImageRecord, ImageError> {
        if let Some(n) = name {
            if !reference::is_valid(n) {
                return Err(ImageError::BadName(n.to_string()));
            }
        }
        let index = self.lock();
        let spool = self.new_spool(&format!("{}-{}", std::process::id(), now))?;
        let result = tar::Archive::new(archive)
            .unpack(&spool)
            .map_err(io_err("unpack the archive into", &spool))
            .and_then(|()| self.import_spooled(&spool, name, now));
        let _ = std::fs::remove_dir_all(&spool);
        self.commit(index, result?, may_replace)
    }

    /// A fresh directory beneath the spool (emptied when the store opens), for one import.
    pub fn new_spool(&self, tag: &str) -> Result<PathBuf, ImageError> {
        let spool = self.root.join("spool").join(tag);
        if spool.exists() {
            std::fs::remove_dir_all(&spool).map_err(io_err("empty", &spool))?;
        }
        std::fs::create_dir_all(&spool).map_err(io_err("create", &spool))?;
        Ok(spool)
    }

    /// Where pulls keep blobs they are fetching or have fetched and verified, across
    /// restarts, until the image that needs them is in the store.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The stored blob `digest`, when the store has it (a layer another image brought).
    pub fn stored_blob(&self, digest: &str) -> Option<PathBuf> {
        let p = self.blob_path(digest);
        p.is_file().then_some(p)
    }

    /// Imports the OCI image layout in `spool` (made by [`ImageStore::new_spool`], removed
    /// after) under `name`, through the same checks as an archive.
    pub fn import_layout(
        &self,
        spool: &Path,
        name: &str,
        now: u64,
    ) -> Result<ImageRecord, ImageError> {
        if !reference::is_valid(name) {
            return Err(ImageError::BadName(name.to_string()));
        }
        let index = self.lock();
        let result = self.import_spooled(spool, Some(name), now);
        let _ = std::fs::remove_dir_all(spool);
        let record = ImageRecord {
            pulled: true,
            ..result?
        };
        self.commit(index, record, &|_| Ok(()))
    }

    /// Names `record` in the index, replacing an image of its name if `may_replace` agrees.
    fn commit(
        &self,
        mut index: std::sync::MutexGuard<'_, Vec<ImageRecord>>,
        record: ImageRecord,
        may_replace: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<ImageRecord, ImageError> {
        if index.iter().any(|r| r.name == record.name) {
            may_replace(&record.name).map_err(ImageError::Refused)?;
        }
        index.retain(|r| r.name != record.name);
        index.push(record.clone());
        self.save(&index)?;
        Ok(record)
    }

    fn import_spooled(
        &self,
        spool: &Path,
        name: Option<&str>,
        now: u64,
    ) -> Result<ImageRecord, ImageError> {
        let spool_fd = crate::beneath::open_root(spool).map_err(|source| ImageError::Archive {
            path: spool.to_owned(),
            source,
        })?;
        let found = import::find(spool_fd.as_fd())?;
        let name = name
            .map(str::to_string)
            .or(found.name.clone())
            .ok_or(ImageError::NoName)?;
        let config_path = &found.config.path;
        let config_bytes = import::read_spooled(spool_fd.as_fd(), config_path)?;
        if let Some(expected) = &found.config.digest {
            import::check(
                expected,
                &format!("sha256:{:x}", Sha256::digest(&config_bytes)),
            )?;
        }
        let parsed = config::parse(&config_bytes).map_err(|source| ImageError::BadJson {
            path: config_path.clone(),
            source,
        })?;
        let os = parsed.os.clone().unwrap_or_else(|| "linux".into());
        let arch = parsed
            .architecture
            .clone()
            .unwrap_or_else(|| "amd64".into());
        if os != "linux" || arch != "amd64" {
            return Err(ImageError::WrongPlatform { os, arch });
        }
        let id = self.keep_blob(spool_fd.as_fd(), spool, &found.config)?.0;
        let mut layers = Vec::new();
        let mut size = config_bytes.len() as u64;
        for blob in &found.layers {
            // A layer listed again (old images repeat the empty one) was stored already.
            if let Some(d) = blob.digest.as_ref().filter(|d| layers.contains(*d)) {
                layers.push(d.clone());
                continue;
            }
            let (digest, bytes, file) = self.keep_blob(spool_fd.as_fd(), spool, blob)?;
            size += bytes;
            let dir = self.layer_dir(&digest);
            if !dir.is_dir() {
                tracing::info!(layer = %digest, "unpacking layer");
                layer::unpack(file, &self.blob_path(&digest), &dir)?;
            }
            layers.push(digest);
        }
        Ok(ImageRecord {
            name: reference::normalize(&name),
            id,
            layers,
            config: parsed.config,
            size,
            imported_at: now,
            pulled: false,
        })
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex(digest))
    }

    /// Moves a spooled blob (a regular file beneath the spool, reached through no link) into
    /// the store under its digest, hashed from the descriptor that is returned, so what is
    /// unpacked is what was hashed. Returns the digest, the size and that descriptor.
    fn keep_blob(
        &self,
        spool_fd: BorrowedFd<'_>,
        spool: &Path,
        blob: &import::Blob,
    ) -> Result<(String, u64, File), ImageError> {
        let rel = &blob.path;
        let mut file =
            crate::beneath::open_file(spool_fd, rel).map_err(|source| match &source {
                crate::beneath::BeneathError::Io { source: e, .. }
                    if e.kind() == std::io::ErrorKind::NotFound =>
                {
                    ImageError::MissingBlob(
                        blob.digest
                            .clone()
                            .unwrap_or_else(|| rel.display().to_string()),
                    )
                }
                _ => ImageError::Archive {
                    path: rel.clone(),
                    source,
                },
            })?;
        let got = import::digest_of(&mut file, rel)?;
        if let Some(expected) = &blob.digest {
            import::check(expected, &got)?;
        }
        let meta = file.metadata().map_err(io_err("read", rel))?;
        let dest = self.blob_path(&got);
        if !dest.exists() {
            let spooled = spool.join(rel);
            std::fs::rename(&spooled, &dest).map_err(io_err("store blob", &dest))?;
            // The name moved is the file hashed: nothing swapped it between.
            let moved = std::fs::symlink_metadata(&dest).map_err(io_err("read", &dest))?;
            if (moved.dev(), moved.ino()) != (meta.dev(), meta.ino()) {
                let _ = std::fs::remove_file(&dest);
                return Err(ImageError::Io {
                    action: "store blob",
                    path: dest,
                    source: std::io::Error::other("the spooled file changed while it was hashed"),
                });
            }
        }
        Ok((got, meta.len(), file))
    }

    /// Removes the image named `name` and every blob and layer no other image uses.
    /// The caller makes sure no task uses it.
    pub fn remove(&self, name: &str) -> Result<ImageRecord, ImageError> {
        self.remove_keeping(name, &std::collections::BTreeSet::new())
    }

    /// [`ImageStore::remove`], leaving the layers in `keep` (those live tasks run on, which
    /// an image of another name, or this name's earlier content, may have brought).
    pub fn remove_keeping(
        &self,
        name: &str,
        keep: &std::collections::BTreeSet<String>,
    ) -> Result<ImageRecord, ImageError> {
        let want = reference::normalize(name);
        let mut index = self.lock();
        let pos = index
            .iter()
            .position(|r| r.name == want)
            .ok_or_else(|| ImageError::NotFound(want.clone()))?;
        let gone = index.remove(pos);
        self.save(&index)?;
        let used = |d: &String| {
            keep.contains(d) || index.iter().any(|r| r.id == *d || r.layers.contains(d))
        };
        for layer in gone.layers.iter().filter(|d| !used(d)) {
            let _ = std::fs::remove_dir_all(self.layer_dir(layer));
            let _ = std::fs::remove_file(self.blob_path(layer));
        }
        if !used(&gone.id) {
            let _ = std::fs::remove_file(self.blob_path(&gone.id));
        }
        Ok(gone)
    }

    fn save(&self, index: &[ImageRecord]) -> Result<(), ImageError> {
        let path = self.root.join("images.json");
        let bytes = serde_json::to_vec_pretty(index).map_err(|source| ImageError::Index {
            path: path.clone(),
            source,
        })?;
        crate::fsutil::write_atomic(&path, &bytes).map_err(io_err("write", &path))
    }
}

/// Removes downloads (kept for a pull's retry) untouched for `age`.
fn forget_stale_downloads(dir: &Path, age: std::time::Duration) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|d| d > age);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests;
