//! One pull of one image from one registry (the origin or a mirror), with a client of its
//! own: the manifest (an index resolved to its linux/amd64 image), the blobs several at once,
//! each under its digest's lock and taken from the store when it has it, the OCI layout laid
//! out in a spool directory of this pull's own, then the store's import.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest, Sha256};

use super::fetch::{self, Counter};
use super::{manifest, Progress, PullError, Puller};
use crate::image::ImageRecord;

pub struct Session<'a> {
    pub puller: &'a Puller,
    pub client: Client,
    pub reference: &'a Reference,
    pub login: &'a RegistryAuth,
    pub progress: &'a Progress,
}

impl Session<'_> {
    /// Pulls the image into the store under `name`.
    pub async fn pull(&self, name: &str) -> Result<ImageRecord, PullError> {
        let reference = self.reference;
        self.client
            .auth(reference, self.login, RegistryOperation::Pull)
            .await
            .map_err(|e| PullError::registry(reference, e))?;
        let (bytes, digest) = self.manifest(reference, reference.digest()).await?;
        let (bytes, digest, parsed) = match manifest::parse(&bytes, None)? {
            manifest::Parsed::Index { chosen } => {
                let by_digest = reference.clone_with_digest(chosen.clone());
                let (b, d) = self.manifest(&by_digest, Some(&chosen)).await?;
                let parsed = manifest::parse(&b, None)?;
                if let manifest::Parsed::Index { .. } = parsed {
                    return Err(manifest::ManifestError::NotAnImage("a nested index".into()).into());
                }
                (b, d, parsed)
            }
            parsed => (bytes, digest, parsed),
        };
        let manifest::Parsed::Image {
            media_type,
            config,
            layers,
        } = parsed
        else {
            return Err(manifest::ManifestError::NotAnImage(String::new()).into());
        };
        // A layer listed twice (old images repeat the empty one) is fetched once.
        let mut seen = BTreeSet::new();
        let mut blobs = vec![config.clone()];
        blobs.extend(
            layers
                .iter()
                .filter(|l| seen.insert(l.digest.clone()))
                .cloned(),
        );
        let total = blobs.iter().fold(0u64, |n, b| n.saturating_add(b.size));
        self.progress
            .layers_total
            .store(blobs.len() as u64 - 1, Ordering::Relaxed);
        self.progress.bytes_total.store(total, Ordering::Relaxed);
        self.check_space(&blobs)?;
        let fetched = self.fetch_all(&blobs, &config.digest).await?;
        let store = &self.puller.store;
        let n = self.puller.spools.fetch_add(1, Ordering::Relaxed);
        let spool = store.new_spool(&format!("pull-{}-{n}", std::process::id()))?;
        if let Err(e) = lay_out(&spool, &media_type, &digest, &bytes, &fetched, store) {
            let _ = std::fs::remove_dir_all(&spool);
            return Err(e);
        }
        let (owned, name) = (store.clone(), name.to_string());
        let now = crate::clock::now_seconds();
        let record = tokio::task::spawn_blocking(move || owned.import_layout(&spool, &name, now))
            .await
            .map_err(|e| PullError::Io {
                action: "import",
                path: store.downloads_dir(),
                source: std::io::Error::other(e.to_string()),
            })??;
        // In the store now: the downloads served their purpose (a pull that still needs one
        // finds it in the store).
        for (_, path) in fetched {
            if path.starts_with(store.downloads_dir()) {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(record)
    }

    /// A manifest's bytes and digest, checked against `want` when the reference names one.
    async fn manifest(
        &self,
        reference: &Reference,
        want: Option<&str>,
    ) -> Result<(Vec<u8>, String), PullError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, self.login, &manifest::ACCEPTED)
            .await
            .map_err(|e| PullError::registry(reference, e))?;
        if bytes.len() > manifest::MANIFEST_LIMIT {
            return Err(manifest::ManifestError::TooLarge(bytes.len()).into());
        }
        let got = format!("sha256:{:x}", Sha256::digest(&bytes));
        if let Some(want) = want {
            crate::image::import::check(want, &got)?;
        }
        Ok((bytes.to_vec(), got))
    }

    /// Refuses a pull whose blobs (those the store lacks) would not fit on the state
    /// directory's filesystem, before a byte is fetched.
    fn check_space(&self, blobs: &[manifest::BlobRef]) -> Result<(), PullError> {
        let store = &self.puller.store;
        let need = blobs
            .iter()
            .filter(|b| store.stored_blob(&b.digest).is_none())
            .fold(0u64, |n, b| n.saturating_add(b.size));
        let dir = store.downloads_dir();
        let Ok(fs) = nix::sys::statvfs::statvfs(&dir) else {
            return Ok(());
        };
        let free = fs.blocks_available().saturating_mul(fs.fragment_size());
        if need > free {
            return Err(PullError::NoSpace {
                need_mib: need >> 20,
                free_mib: free >> 20,
                dir,
            });
        }
        Ok(())
    }

    /// Every blob, `concurrency` at a time: taken from the store when it has it, else fetched.
    async fn fetch_all(
        &self,
        blobs: &[manifest::BlobRef],
        config_digest: &str,
    ) -> Result<Vec<(String, PathBuf)>, PullError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let progress = self.progress;
        stream::iter(blobs.iter().cloned().map(|b| async move {
            let lock = self.puller.blob_lock(&b.digest);
            let _mine = lock.lock().await;
            let path = match self.puller.store.stored_blob(&b.digest) {
                Some(p) => {
                    progress.bytes_done.fetch_add(b.size, Ordering::Relaxed);
                    p
                }
                None => self.fetch_retrying(&b).await?,
            };
            if b.digest != config_digest {
                progress.layers_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, PullError>((b.digest, path))
        }))
        .buffer_unordered(self.puller.config.concurrency.max(1))
        .try_collect()
        .await
    }

    /// One blob, asked for again (resuming where it was cut) after a transient failure,
    /// twice, as the ECS agent retries a pull: a flaky link does not fail a task.
    async fn fetch_retrying(&self, b: &manifest::BlobRef) -> Result<PathBuf, PullError> {
        let dir = self.puller.store.downloads_dir();
        let mut attempt = 0;
        loop {
            let counter = Counter::new(&self.progress.bytes_done);
            let got = fetch::blob(
                &self.client,
                self.reference,
                &b.digest,
                b.size,
                &dir,
                &counter,
            )
            .await;
            match got {
                Err(e) if e.transient() && attempt < 2 => {
                    attempt += 1;
                    // The next try counts the resumed bytes again.
                    counter.take_back();
                    tracing::info!(blob = %b.digest, error = %e, attempt, "blob fetch failed; asking again");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                Err(e) => {
                    counter.take_back();
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }
}

/// Writes an OCI image layout in `spool`: the manifest, and every fetched blob linked in (the
/// downloads and the store are on one filesystem, beneath the state directory). A download
/// another pull has since moved into the store is linked from there.
fn lay_out(
    spool: &Path,
    media_type: &str,
    digest: &str,
    manifest: &[u8],
    blobs: &[(String, PathBuf)],
    store: &crate::image::ImageStore,
) -> Result<(), PullError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| PullError::Io {
            action,
            path,
            source,
        }
    };
    let dir = spool.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let p = dir.join(crate::image::hex(digest));
    std::fs::write(&p, manifest).map_err(io("write", &p))?;
    for (d, from) in blobs {
        let to = dir.join(crate::image::hex(d));
        if to.exists() {
            continue;
        }
        let linked = std::fs::hard_link(from, &to).or_else(|e| match store.stored_blob(d) {
            Some(stored) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::hard_link(stored, &to)
            }
            _ => Err(e),
        });
        linked.map_err(io("link", &to))?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": media_type, "digest": digest, "size": manifest.len()}],
    });
    let p = spool.join("index.json");
    std::fs::write(&p, index.to_string()).map_err(io("write", &p))?;
    let p = spool.join("oci-layout");
    std::fs::write(&p, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io("write", &p))
}
