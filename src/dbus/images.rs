//! The Manager's image methods: import from an archive, pull from a registry (with progress
//! for the client's bar), and who may give an image name new content.

use std::os::fd::OwnedFd;

use super::BerthError;
use crate::engine::Engine;
use crate::spec::policy::GroupPolicy;

/// Imports the tar stream on `fd` as `name` (empty: the archive's name) for caller `uid`.
pub async fn import(
    engine: &Engine,
    group: &GroupPolicy,
    uid: u32,
    fd: OwnedFd,
    name: String,
) -> Result<(String, String), BerthError> {
    // An image is the largest thing berth writes into its state directory.
    engine
        .check_disk()
        .map_err(|e| BerthError::ResourceUnavailable(e.to_string()))?;
    let images = engine.images().clone();
    let name = (!name.is_empty()).then_some(name);
    let now = crate::clock::now_seconds();
    let engine = engine.clone();
    let group = group.clone();
    let rec = tokio::task::spawn_blocking(move || {
        let may_replace = |image: &str| match uid {
            0 => Ok(()),
            _ => replace_refusal(&engine, &group, image).map_or(Ok(()), Err),
        };
        images.import_checked(std::fs::File::from(fd), name.as_deref(), now, &may_replace)
    })
    .await
    .map_err(|e| BerthError::Failed(format!("import stopped: {e}")))??;
    tracing::info!(image = %rec.name, id = %rec.id, "image imported");
    Ok((rec.name, rec.id))
}

/// Pulls `reference` for caller `uid`; the group may not replace an image the policy keeps
/// from it, as with an import.
pub async fn pull(
    engine: &Engine,
    group: &GroupPolicy,
    uid: u32,
    reference: &str,
) -> Result<(String, String), BerthError> {
    let Some(puller) = engine.puller().cloned() else {
        return Err(BerthError::Failed("this berthd pulls no images".into()));
    };
    if !crate::image::reference::is_valid(reference.trim()) {
        return Err(BerthError::InvalidArgument(format!(
            "{reference:?} is not an image reference (such as busybox:1.36 or registry:5000/app@sha256:...)"
        )));
    }
    if uid != 0 && engine.images().get(reference).is_ok() {
        if let Some(why) = replace_refusal(engine, group, reference) {
            return Err(BerthError::AccessDenied(why));
        }
    }
    engine
        .check_disk()
        .map_err(|e| BerthError::ResourceUnavailable(e.to_string()))?;
    let asked_at = crate::clock::now_seconds();
    let rec = puller.pull(reference, None, asked_at).await.map_err(|e| {
        BerthError::Failed(format!(
            "CannotPullContainerError: {reference}: {}",
            e.describe()
        ))
    })?;
    Ok((rec.name, rec.id))
}

/// Pulls in flight as (name, layers done, layers, bytes done, bytes).
pub fn pulls(engine: &Engine) -> Vec<(String, u64, u64, u64, u64)> {
    engine.puller().map_or_else(Vec::new, |p| {
        p.in_flight()
            .into_iter()
            .map(|v| {
                (
                    v.reference,
                    v.layers_done,
                    v.layers_total,
                    v.bytes_done,
                    v.bytes_total,
                )
            })
            .collect()
    })
}

/// Why the group may not give `image` new content: a definition registered with it asks for
/// what the group policy keeps from the group (a privileged container, say), so new content
/// under the name would run with that. `None`: nothing such uses it.
fn replace_refusal(engine: &Engine, group: &GroupPolicy, image: &str) -> Option<String> {
    use crate::image::reference::normalize;
    let want = normalize(image);
    engine.list_definitions("").iter().find_map(|reference| {
        let reg = engine.describe_definition(reference).ok()?;
        let def = &reg.definition;
        def.containers
            .iter()
            .any(|c| normalize(&c.image) == want)
            .then_some(())?;
        let refused = crate::spec::policy::refusals(def, group);
        (!refused.is_empty()).then(|| {
            format!(
                "image {want} is used by {reference}, which asks for what berthd's config keeps \
                 from the berth group ({}): only root may give the name new content; import \
                 under another name",
                refused.join("; ")
            )
        })
    })
}
