//! Pulling images from OCI Distribution registries into the store, with `oci-client`: the
//! manifest (an index resolved to linux/amd64), then the config and layers several at once
//! into the downloads directory (`fetch`), verified, then an OCI layout in the spool that the
//! store imports through the same checks as an archive. Layers the store already has are not
//! fetched; a pull that was cut off resumes; one image is pulled once however many tasks ask.

pub mod auth;
mod fetch;
pub mod manifest;
mod reason;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

use super::{ImageError, ImageRecord, ImageStore};
pub use auth::Credentials;

/// When RunTask pulls (the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`, with berth's `default`
/// pulling only what the store lacks, so an imported image is never fetched over it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullBehavior {
    /// Pull an image the store lacks.
    #[default]
    Default,
    /// Pull at every RunTask; a failed pull stops the task.
    Always,
    /// Pull an image once; later tasks use the store's.
    Once,
    /// Use the store's image when there is one; pull otherwise.
    PreferCached,
}

impl PullBehavior {
    /// Whether a task's image is pulled, given whether the store has it.
    pub fn should_pull(self, cached: bool) -> bool {
        match self {
            PullBehavior::Always => true,
            PullBehavior::Default | PullBehavior::Once | PullBehavior::PreferCached => !cached,
        }
    }
}

/// The registry settings of `berthd.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullConfig {
    /// Docker `config.json` with registry logins, root's alone.
    pub auth_file: PathBuf,
    /// Registries tried before Docker Hub for its images (Docker's `registry-mirrors`).
    pub mirrors: Vec<String>,
    /// Registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM files of certificate authorities trusted beside the system's.
    pub ca_files: Vec<PathBuf>,
    /// A registry silent this long fails the pull (ECS's pull inactivity timeout).
    pub inactivity_timeout: Duration,
    /// The longest a whole pull may take.
    pub timeout: Duration,
    /// Blobs fetched at once.
    pub concurrency: usize,
    /// Where `repositoryCredentials` secrets are read (the daemon's `secrets_dir`).
    pub secrets_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0:?} is not an image reference: {1}")]
    BadReference(String, String),
    #[error("{registry}: {reason}")]
    Registry {
        registry: String,
        reason: String,
        /// A timeout, a refused connection or a 5xx: worth asking again.
        transient: bool,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("blob {digest} is longer than the {size} bytes its manifest gives")]
    TooLong { digest: String, size: u64 },
    #[error("the download of {digest} was cut off: {reason} (a retry resumes it)")]
    Interrupted { digest: String, reason: String },
    #[error("the pull took longer than {0} s (image_pull_timeout_secs)")]
    Timeout(u64),
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] ImageError),
    #[error("the image needs {need_mib} MiB more than berth has; {dir} has {free_mib} MiB free")]
    NoSpace {
        need_mib: u64,
        free_mib: u64,
        dir: PathBuf,
    },
    #[error("CA certificate {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
}

impl PullError {
    /// A registry's error with its own reason (its error envelope, the HTTP status, or what
    /// the connection said), every cause named.
    fn registry(reference: &Reference, e: OciDistributionError) -> PullError {
        PullError::Registry {
            registry: reference.resolve_registry().to_string(),
            reason: reason::of(&e),
            transient: reason::transient(&e),
        }
    }

    /// The whole reason, every cause named, cut to what a stoppedReason can carry (a
    /// registry's error page is not copied whole).
    pub fn describe(&self) -> String {
        const MAX: usize = 1000;
        let mut r = crate::errors::chain(self);
        if r.len() > MAX {
            let mut end = MAX;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
            r.push_str("...");
        }
        r
    }

    /// Whether asking again may succeed: a blob cut off, a registry that timed out, refused
    /// the connection or failed on its side.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            PullError::Interrupted { .. }
                | PullError::Registry {
                    transient: true,
                    ..
                }
        )
    }
}

/// How far a pull is, for progress bars: counters the fetches add to.
#[derive(Debug, Default)]
pub struct Progress {
    pub layers_total: AtomicU64,
    pub layers_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
}

/// One pull in flight as the faces show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullView {
    pub reference: String,
    pub layers_done: u64,
    pub layers_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Pulls images into one store.
pub struct Puller {
    store: Arc<ImageStore>,
    /// The CA certificates of `registry_ca_files`, read once.
    certificates: Vec<Certificate>,
    config: PullConfig,
    /// One lock per blob: two images sharing a layer fetch it once, never into one file twice.
    blobs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Numbers each pull's spool directory.
    spools: AtomicU64,
    /// One lock per image name: a second pull of it waits for the first and takes its image.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    progress: Mutex<BTreeMap<String, Arc<Progress>>>,
    durations: prometheus::HistogramVec,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("config", &self.config)
            .finish()
    }
}

/// Pulls take seconds on a LAN and minutes for large images on slow links.
const PULL_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

impl Puller {
    pub fn new(store: Arc<ImageStore>, config: PullConfig) -> Result<Puller, PullError> {
        let mut extra = Vec::new();
        for path in &config.ca_files {
            let data = std::fs::read(path).map_err(|e| PullError::Ca {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            extra.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let durations = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "berth_image_pull_duration_seconds",
                "Time each image pull took, by result (a pull that found its image already pulled by another is not counted).",
            )
            .buckets(PULL_BUCKETS.to_vec()),
            &["result"],
        )
        .map_err(|e| PullError::Registry {
            registry: String::new(),
            reason: e.to_string(),
            transient: false,
        })?;
        let puller = Puller {
            store,
            certificates: extra,
            config,
            blobs: Mutex::new(HashMap::new()),
            spools: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
            progress: Mutex::new(BTreeMap::new()),
            durations,
        };
        // A certificate that does not parse is found now, not at the first pull.
        puller.client()?;
        Ok(puller)
    }

    /// A client of its own for one pull: oci-client keeps the first login it sees for a
    /// registry for its life, which must not outlive a pull (a task's credentials, a password
    /// changed in the login file).
    fn client(&self) -> Result<Client, PullError> {
        Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.config.insecure.clone()),
            extra_root_certificates: self.certificates.clone(),
            platform_resolver: None,
            read_timeout: Some(self.config.inactivity_timeout),
            connect_timeout: Some(self.config.inactivity_timeout),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
        .map_err(|e| PullError::Ca {
            path: self.config.ca_files.first().cloned().unwrap_or_default(),
            reason: e.to_string(),
        })
    }

    /// The lock of blob `digest`.
    fn blob_lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut blobs = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        blobs.entry(digest.to_string()).or_default().clone()
    }

    /// The pull-duration histogram, for the metrics registry.
    pub fn durations(&self) -> prometheus::HistogramVec {
        self.durations.clone()
    }

    /// Pulls in flight, by image name.
    pub fn in_flight(&self) -> Vec<PullView> {
        let map = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(r, p)| PullView {
                reference: r.clone(),
                layers_done: p.layers_done.load(Ordering::Relaxed),
                layers_total: p.layers_total.load(Ordering::Relaxed),
                bytes_done: p.bytes_done.load(Ordering::Relaxed),
                bytes_total: p.bytes_total.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The login for `reference`'s registry: the task's `repositoryCredentials` secret when it
    /// names one, else the login file's entry, else none.
    fn login(
        &self,
        registry: &str,
        credentials_parameter: Option<&str>,
    ) -> Result<RegistryAuth, PullError> {
        let creds = match credentials_parameter {
            Some(param) => {
                let value =
                    crate::runtime::secrets::read_value(self.config.secrets_dir.as_deref(), param)
                        .map_err(auth::AuthError::Secret)?;
                Some(auth::from_secret(&value)?)
            }
            None => auth::from_file(&self.config.auth_file, registry)?,
        };
        Ok(match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        })
    }

    /// Pulls `image` into the store unless another pull of it finished after `asked_at` (unix
    /// seconds), in which case that one's image is returned.
    pub async fn pull(
        &self,
        image: &str,
        credentials_parameter: Option<&str>,
        asked_at: u64,
    ) -> Result<ImageRecord, PullError> {
        let name = super::reference::normalize(image);
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(name.clone()).or_default().clone()
        };
        let _turn = flight.lock().await;
        if let Ok(r) = self.store.get(&name) {
            if r.imported_at >= asked_at {
                return Ok(r);
            }
        }
        let progress = Arc::new(Progress::default());
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.clone(), progress.clone());
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.config.timeout,
            self.pull_now(image, &name, credentials_parameter, &progress),
        )
        .await
        .unwrap_or(Err(PullError::Timeout(self.config.timeout.as_secs())));
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        let label = if result.is_ok() { "success" } else { "failure" };
        self.durations
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) => {
                tracing::info!(image = %name, id = %r.id, seconds = started.elapsed().as_secs_f64(), "image pulled")
            }
            Err(e) => tracing::warn!(image = %name, error = %e, "image pull failed"),
        }
        result
    }

    async fn pull_now(
        &self,
        image: &str,
        name: &str,
        credentials_parameter: Option<&str>,
        progress: &Progress,
    ) -> Result<ImageRecord, PullError> {
        let origin: Reference = image.trim().parse().map_err(|e: oci_client::ParseError| {
            PullError::BadReference(image.to_string(), e.to_string())
        })?;
        let mut last = None;
        for (reference, mirror) in self.candidates(&origin) {
            // A mirror's login is its own (from the file); the task's credentials are the
            // origin's.
            let login = self.login(
                reference.resolve_registry(),
                credentials_parameter.filter(|_| !mirror),
            )?;
            let session = session::Session {
                puller: self,
                client: self.client()?,
                reference: &reference,
                login: &login,
                progress,
            };
            match session.pull(name).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    if mirror {
                        tracing::warn!(mirror = %reference.resolve_registry(), error = %e, "mirror failed; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| PullError::BadReference(image.into(), "no registry".into())))
    }

    /// Where to ask for `origin`: each mirror first for Docker Hub's images (the same
    /// repository on the mirror's host, as Docker's `registry-mirrors`), then the origin.
    fn candidates(&self, origin: &Reference) -> Vec<(Reference, bool)> {
        let mut out = Vec::new();
        if origin.registry() == "docker.io" {
            for m in &self.config.mirrors {
                let repo = origin.repository().to_string();
                let r = match (origin.tag(), origin.digest()) {
                    (Some(t), Some(d)) => {
                        Reference::with_tag_and_digest(m.clone(), repo, t.into(), d.into())
                    }
                    (None, Some(d)) => Reference::with_digest(m.clone(), repo, d.into()),
                    (t, None) => Reference::with_tag(m.clone(), repo, t.unwrap_or("latest").into()),
                };
                out.push((r, true));
            }
        }
        out.push((origin.clone(), false));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_always_pulls_an_image_the_store_has() {
        for b in [
            PullBehavior::Default,
            PullBehavior::Once,
            PullBehavior::PreferCached,
        ] {
            assert!(b.should_pull(false), "{b:?}");
            assert!(!b.should_pull(true), "{b:?}");
        }
        assert!(PullBehavior::Always.should_pull(true));
    }
}
