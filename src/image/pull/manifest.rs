//! What a registry's manifest says, read without trusting it: an index (OCI image index or
//! Docker manifest list) resolved to linux/amd64, or an image manifest's config and layers,
//! each a sha256 digest with a size berth will hold the download to.
//!
//! Pure: bytes in, a plan out.

use serde::Deserialize;

/// The manifest kinds berth asks a registry for, most preferred first.
pub const ACCEPTED: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The most of a manifest berth reads (real ones are a few KiB).
pub const MANIFEST_LIMIT: usize = 4 << 20;

/// The most layers an image may have: overlayfs stacks no more than about 128 lowers on a
/// page of mount options, and Docker refuses past 127.
pub const LAYER_LIMIT: usize = 128;

/// A blob to fetch: its digest and the size the manifest gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
}

/// What one manifest's bytes turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An index: fetch the manifest with this digest next.
    Index { chosen: String },
    /// An image manifest: its media type (written to the layout), config and layers.
    Image {
        media_type: String,
        config: BlobRef,
        layers: Vec<BlobRef>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the registry's manifest is {0} bytes, more than berth reads (4 MiB)")]
    TooLarge(usize),
    #[error("the registry's manifest is not valid JSON: {0}")]
    BadJson(String),
    #[error("the image index has no linux/amd64 image (it has: {0})")]
    NoPlatform(String),
    #[error("the image has {0} layers, more than berth stacks (128)")]
    TooManyLayers(usize),
    #[error("the registry sent a schema 1 manifest, which berth does not read; push the image again with a current client (skopeo copy, docker push)")]
    Schema1,
    #[error("the registry sent a manifest of type {0:?}, which is not an image")]
    NotAnImage(String),
    #[error("{0:?} is not a sha256 digest berth accepts")]
    BadDigest(String),
    #[error("layer {digest} has media type {media_type:?}, which berth cannot unpack")]
    LayerType { digest: String, media_type: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    architecture: String,
    os: String,
}

/// Reads a manifest the registry sent with `content_type` (its header, which may be absent).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
    if bytes.len() > MANIFEST_LIMIT {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let raw: Raw =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::BadJson(e.to_string()))?;
    if raw.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(str::to_string))
        .unwrap_or_default();
    if let Some(manifests) = raw.manifests {
        return choose(&manifests).map(|chosen| Parsed::Index { chosen });
    }
    let (Some(config), Some(layers)) = (raw.config, raw.layers) else {
        return Err(ManifestError::NotAnImage(media_type));
    };
    if layers.len() > LAYER_LIMIT {
        return Err(ManifestError::TooManyLayers(layers.len()));
    }
    let layers = layers
        .into_iter()
        .map(|l| {
            let kind = l.media_type.clone().unwrap_or_default();
            if !unpackable(&kind) {
                return Err(ManifestError::LayerType {
                    digest: l.digest,
                    media_type: kind,
                });
            }
            blob(l)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let media_type = if media_type.is_empty() {
        ACCEPTED[2].to_string()
    } else {
        media_type
    };
    Ok(Parsed::Image {
        media_type,
        config: blob(config)?,
        layers,
    })
}

/// The linux/amd64 entry of an index.
fn choose(manifests: &[RawDescriptor]) -> Result<String, ManifestError> {
    let found = manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    });
    match found {
        Some(d) => Ok(checked_digest(&d.digest)?.to_string()),
        None => {
            let have: Vec<String> = manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            Err(ManifestError::NoPlatform(if have.is_empty() {
                "no platforms named".into()
            } else {
                have.join(", ")
            }))
        }
    }
}

fn blob(d: RawDescriptor) -> Result<BlobRef, ManifestError> {
    Ok(BlobRef {
        digest: checked_digest(&d.digest)?.to_string(),
        size: d.size,
    })
}

/// `digest` when it is `sha256:` and 64 lowercase hex digits: it becomes a file name.
pub fn checked_digest(digest: &str) -> Result<&str, ManifestError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(digest)
    } else {
        Err(ManifestError::BadDigest(digest.to_string()))
    }
}

/// Layer media types berth unpacks: tar, gzip or zstd, OCI or Docker; an absent type is taken
/// as a tar (old registries leave it out), its compression found from its first bytes.
fn unpackable(media_type: &str) -> bool {
    matches!(
        media_type,
        "" | "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

    #[test]
    fn an_index_resolves_to_its_linux_amd64_manifest() {
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
              {{"digest":"{A}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"digest":"{B}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        assert_eq!(
            parse(index.as_bytes(), None),
            Ok(Parsed::Index { chosen: B.into() })
        );
    }

    #[test]
    fn an_index_without_amd64_names_what_it_has() {
        let index = format!(
            r#"{{"manifests":[{{"digest":"{A}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{"digest":"{B}","platform":{{"os":"windows","architecture":"amd64"}}}}]}}"#
        );
        let e = parse(index.as_bytes(), None).unwrap_err().to_string();
        assert!(e.contains("linux/arm64, windows/amd64"), "{e}");
    }

    #[test]
    fn a_docker_v2_manifest_gives_config_and_layers_in_order() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
              "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{A}","size":10}},
              "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{B}","size":20}},
                        {{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{C}","size":30}}]}}"#
        );
        let Parsed::Image {
            media_type,
            config,
            layers,
        } = parse(m.as_bytes(), None).unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(
            media_type,
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(config.digest, A);
        assert_eq!(config.size, 10);
        assert_eq!(
            layers.iter().map(|l| l.digest.as_str()).collect::<Vec<_>>(),
            [B, C]
        );
    }

    #[test]
    fn hostile_digests_and_foreign_layers_are_refused() {
        let m = r#"{"config":{"digest":"sha256:../../etc/passwd","size":1},"layers":[]}"#;
        assert!(matches!(
            parse(m.as_bytes(), None),
            Err(ManifestError::BadDigest(_))
        ));
        let m = format!(
            r#"{{"config":{{"digest":"{A}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{B}"}}]}}"#
        );
        assert!(matches!(
            parse(m.as_bytes(), None),
            Err(ManifestError::LayerType { .. })
        ));
        let upper = A.to_uppercase().replace("SHA256", "sha256");
        assert!(checked_digest(&upper).is_err());
    }

    #[test]
    fn schema1_and_oversized_manifests_are_refused_with_advice() {
        let e = parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, None).unwrap_err();
        assert_eq!(e, ManifestError::Schema1);
        let many: Vec<String> = (0..=LAYER_LIMIT)
            .map(|_| format!(r#"{{"digest":"{A}","size":1}}"#))
            .collect();
        let m = format!(
            r#"{{"config":{{"digest":"{B}"}},"layers":[{}]}}"#,
            many.join(",")
        );
        assert_eq!(
            parse(m.as_bytes(), None),
            Err(ManifestError::TooManyLayers(LAYER_LIMIT + 1))
        );
        let big = vec![b' '; MANIFEST_LIMIT + 1];
        assert_eq!(
            parse(&big, None),
            Err(ManifestError::TooLarge(MANIFEST_LIMIT + 1))
        );
    }
}
