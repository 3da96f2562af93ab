//! One blob from a registry into the downloads directory: hashed as it streams, held to the
//! size its manifest gives, and named by its digest only once the hash matches. A download cut
//! off (the registry gone, berthd killed) stays as `<hex>.partial` and the next pull resumes it
//! with a range request, hashing what is already on disk first; a partial file is never used.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use oci_client::client::{BlobResponse, SizedStream};
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PullError;

/// What one try at a blob added to the pull's byte count, to take back if it fails.
pub struct Counter<'a> {
    all: &'a AtomicU64,
    mine: AtomicU64,
}

impl<'a> Counter<'a> {
    pub fn new(all: &'a AtomicU64) -> Counter<'a> {
        Counter {
            all,
            mine: AtomicU64::new(0),
        }
    }

    fn add(&self, n: u64) {
        self.all.fetch_add(n, Ordering::Relaxed);
        self.mine.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: u64) {
        let n = n.min(self.mine.load(Ordering::Relaxed));
        self.all.fetch_sub(n, Ordering::Relaxed);
        self.mine.fetch_sub(n, Ordering::Relaxed);
    }

    /// Takes back every byte this try counted.
    pub fn take_back(&self) {
        self.sub(self.mine.load(Ordering::Relaxed));
    }
}

/// Fetches `digest` (of `size` bytes) into `dir`, returning the verified file's path.
/// `bytes_done` counts every byte that arrives, resumed ones included. The caller holds the
/// digest's lock: no other fetch writes its file.
pub async fn blob(
    client: &Client,
    reference: &Reference,
    digest: &str,
    size: u64,
    dir: &Path,
    bytes_done: &Counter<'_>,
) -> Result<PathBuf, PullError> {
    let hex = crate::image::hex(digest);
    let done = dir.join(hex);
    if tokio::fs::metadata(&done).await.is_ok_and(|m| m.is_file()) {
        bytes_done.add(size);
        return Ok(done);
    }
    let part = dir.join(format!("{hex}.partial"));
    let (mut hasher, mut have) = hash_existing(&part).await?;
    if have == size && size > 0 {
        // Every byte arrived before the cut: only the check and the rename were left.
        if format!("sha256:{:x}", hasher.clone().finalize()) == digest {
            bytes_done.add(size);
            tokio::fs::rename(&part, &done)
                .await
                .map_err(|source| PullError::Io {
                    action: "rename",
                    path: part.clone(),
                    source,
                })?;
            return Ok(done);
        }
    }
    if have >= size {
        have = 0;
        hasher = Sha256::new();
    }
    bytes_done.add(have);
    let stream = if have > 0 {
        match client
            .pull_blob_stream_partial(reference, digest, have, None)
            .await
            .map_err(|e| PullError::registry(reference, e))?
        {
            BlobResponse::Partial(s) => s,
            // The registry does not do ranges: start again.
            BlobResponse::Full(s) => {
                bytes_done.sub(have);
                have = 0;
                hasher = Sha256::new();
                s
            }
        }
    } else {
        client
            .pull_blob_stream(reference, digest)
            .await
            .map_err(|e| PullError::registry(reference, e))?
    };
    let io = |action: &'static str| {
        let part = part.clone();
        move |source| PullError::Io {
            action,
            path: part,
            source,
        }
    };
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(have == 0)
        .append(have > 0)
        .open(&part)
        .await
        .map_err(io("open"))?;
    let mut to = Partial {
        file,
        path: &part,
        hasher: &mut hasher,
        have: &mut have,
    };
    copy(stream, &mut to, size, digest, bytes_done).await?;
    to.file.sync_all().await.map_err(io("sync"))?;
    drop(to);
    let got = format!("sha256:{:x}", hasher.finalize());
    if let Err(e) = crate::image::import::check(digest, &got) {
        // Bytes that hash wrong are no start for a resume either.
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e.into());
    }
    tokio::fs::rename(&part, &done)
        .await
        .map_err(io("rename"))?;
    Ok(done)
}

/// A download being written: its file, the hash of every byte in it, how many there are.
struct Partial<'a> {
    file: tokio::fs::File,
    path: &'a Path,
    hasher: &'a mut Sha256,
    have: &'a mut u64,
}

/// Writes the stream to the partial file, hashing it, refusing bytes past `size`.
async fn copy(
    mut stream: SizedStream,
    to: &mut Partial<'_>,
    size: u64,
    digest: &str,
    bytes_done: &Counter<'_>,
) -> Result<(), PullError> {
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            // oci-client's own check at the end of the stream: berth's, over every byte on
            // disk (resumed ones too), decides next.
            Err(e) if is_verification(&e) => break,
            Err(e) => {
                return Err(PullError::Interrupted {
                    digest: digest.into(),
                    reason: crate::errors::chain(&e),
                })
            }
        };
        *to.have += chunk.len() as u64;
        if *to.have > size {
            return Err(PullError::TooLong {
                digest: digest.into(),
                size,
            });
        }
        to.hasher.update(&chunk);
        to.file
            .write_all(&chunk)
            .await
            .map_err(|source| PullError::Io {
                action: "write",
                path: to.path.to_owned(),
                source,
            })?;
        bytes_done.add(chunk.len() as u64);
    }
    Ok(())
}

fn is_verification(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| {
        inner
            .downcast_ref::<oci_client::errors::DigestError>()
            .is_some()
    })
}

/// The hash state and length of what a cut-off download left; nothing when there is none.
async fn hash_existing(part: &Path) -> Result<(Sha256, u64), PullError> {
    let mut hasher = Sha256::new();
    let mut file = match tokio::fs::File::open(part).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(source) => {
            return Err(PullError::Io {
                action: "open",
                path: part.to_owned(),
                source,
            })
        }
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total = 0u64;
    loop {
        let n = file.read(&mut buf).await.map_err(|source| PullError::Io {
            action: "read",
            path: part.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((hasher, n_total))
}
