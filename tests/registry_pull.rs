//! Pulls from a real registry (Debian's docker-registry, TLS from a test CA, htpasswd auth),
//! started by this test with images pushed by skopeo (tests/registry/test-registry): by tag,
//! by digest, through an index, zstd layers, wrong credentials, a cut-off download resumed, a
//! corrupt partial file and a corrupt registry blob refused, layers the store has not fetched
//! again, and two pulls of one image made once. One test, one registry: the phases run in order.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use berth::image::pull::{PullConfig, Puller};
use berth::image::ImageStore;

struct Registry {
    dir: PathBuf,
    address: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/registry/test-registry")
}

fn run(args: &[&str], dir: &Path) {
    let out = Command::new(script())
        .args(args)
        .env("BIG_MIB", "2")
        .output()
        .unwrap_or_else(|e| panic!("test-registry {args:?}: {e}"));
    assert!(
        out.status.success(),
        "test-registry {args:?} in {}: {}{} (it needs docker-registry, skopeo, openssl, apache2-utils, busybox-static, jq: tests/all installs them)",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start(dir: &Path) -> Registry {
    // A port of this process's own: two test runs on one host do not meet.
    let port = 20000 + (std::process::id() % 20000);
    let d = dir.to_str().expect("utf-8 temp dir");
    run(&["start", d, &port.to_string()], dir);
    let reg = Registry {
        dir: dir.to_owned(),
        address: format!("127.0.0.1:{port}"),
    };
    run(&["push", d], dir);
    reg
}

fn log(reg: &Registry) -> String {
    std::fs::read_to_string(reg.dir.join("registry.log")).unwrap_or_default()
}

/// Access-log lines of GETs of `path` answered with `status`.
fn gets(reg: &Registry, path: &str, status: u16) -> usize {
    log(reg)
        .lines()
        .filter(|l| l.contains(&format!("\"GET {path} ")) && l.contains(&format!("\" {status} ")))
        .count()
}

fn curl(reg: &Registry, path: &str, accept: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(reg.dir.join("ca.crt"))
        .args(["-u", "berth:s3cret-pw", "-H", &format!("Accept: {accept}")])
        .arg(format!("https://{}{path}", reg.address))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {path}");
    out.stdout
}

fn manifest(reg: &Registry, repo: &str) -> serde_json::Value {
    let bytes = curl(
        reg,
        &format!("/v2/{repo}/manifests/1"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    serde_json::from_slice(&bytes).expect("manifest JSON")
}

fn puller(state: &Path, reg: &Registry, auth: &str) -> (Arc<ImageStore>, Puller) {
    puller_with(state, reg, auth, Vec::new())
}

fn puller_insecure(
    state: &Path,
    reg: &Registry,
    insecure: Vec<String>,
) -> (Arc<ImageStore>, Puller) {
    puller_full(state, reg, "{}", Vec::new(), insecure)
}

fn puller_with(
    state: &Path,
    reg: &Registry,
    auth: &str,
    mirrors: Vec<String>,
) -> (Arc<ImageStore>, Puller) {
    puller_full(state, reg, auth, mirrors, Vec::new())
}

fn puller_full(
    state: &Path,
    reg: &Registry,
    auth: &str,
    mirrors: Vec<String>,
    insecure: Vec<String>,
) -> (Arc<ImageStore>, Puller) {
    let store = Arc::new(ImageStore::open(&state.join("images")).expect("store"));
    let auth_file = state.join("auth.json");
    std::fs::write(&auth_file, auth).expect("auth file");
    std::fs::set_permissions(&auth_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let p = Puller::new(
        store.clone(),
        PullConfig {
            auth_file,
            mirrors,
            insecure,
            ca_files: vec![reg.dir.join("ca.crt")],
            inactivity_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            concurrency: 3,
            secrets_dir: None,
        },
    )
    .expect("puller");
    (store, p)
}

fn login(reg: &Registry, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("berth:{password}"));
    format!(r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#, reg.address)
}

fn spool_is_empty(state: &Path) -> bool {
    std::fs::read_dir(state.join("images/spool")).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_from_a_real_registry() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: layers unpack with their owners and the login file must be root's; run as root (CI does)");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let reg = start(&work.path().join("registry"));
    let state = work.path().join("state");
    let a = &reg.address;

    // Wrong password: the registry's own reason, nothing stored, nothing left in the spool.
    let (store, p) = puller(&state, &reg, &login(&reg, "wrong"));
    let e = p
        .pull(&format!("{a}/busybox:1"), None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("unauthorized") || e.contains("401"),
        "{e}"
    );
    assert!(store.get(&format!("{a}/busybox:1")).is_err());
    assert!(spool_is_empty(&state));

    // The login file mended: the same puller uses the new login (no login outlives a pull).
    std::fs::write(state.join("auth.json"), login(&reg, "s3cret-pw")).expect("auth file");
    let rec = p
        .pull(&format!("{a}/busybox:1"), None, 0)
        .await
        .expect("busybox:1");
    assert_eq!(rec.name, format!("{a}/busybox:1"));
    assert_eq!(rec.layers.len(), 1);
    assert!(store
        .layer_dir(&rec.layers[0])
        .join("bin/busybox")
        .is_file());
    assert_eq!(
        rec.config.cmd.as_deref(),
        Some(&["sh".to_string()][..]),
        "{:?}",
        rec.config
    );

    // A Docker schema 2 manifest, as docker push leaves it.
    let d = p
        .pull(&format!("{a}/docker:1"), None, 0)
        .await
        .expect("docker:1");
    assert!(store.layer_dir(&d.layers[0]).join("bin/busybox").is_file());
    let raw = curl(
        &reg,
        "/v2/docker/manifests/1",
        "application/vnd.docker.distribution.manifest.v2+json",
    );
    assert!(
        String::from_utf8_lossy(&raw)
            .contains("application/vnd.docker.distribution.manifest.v2+json"),
        "docker:1 is not a Docker schema 2 manifest"
    );

    // zstd layers unpack.
    let z = p
        .pull(&format!("{a}/zstd:1"), None, 0)
        .await
        .expect("zstd:1");
    assert!(store.layer_dir(&z.layers[0]).join("bin/busybox").is_file());

    // Through an index to its linux/amd64 image, and by that manifest's digest.
    let m = p
        .pull(&format!("{a}/multi:1"), None, 0)
        .await
        .expect("multi:1");
    let index: serde_json::Value = serde_json::from_slice(&curl(
        &reg,
        "/v2/multi/manifests/1",
        "application/vnd.oci.image.index.v1+json",
    ))
    .expect("index");
    let amd = index["manifests"]
        .as_array()
        .and_then(|v| v.iter().find(|d| d["platform"]["architecture"] == "amd64"))
        .and_then(|d| d["digest"].as_str())
        .expect("amd64 entry")
        .to_string();
    let by_digest = p
        .pull(&format!("{a}/multi@{amd}"), None, 0)
        .await
        .expect("by digest");
    assert_eq!(
        by_digest.id, m.id,
        "the index's amd64 image and the same by digest"
    );
    let e = p
        .pull(&format!("{a}/multi@sha256:{}", "0".repeat(64)), None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.to_lowercase().contains("manifest unknown") || e.contains("404"),
        "{e}"
    );

    // big: its first layer is busybox's (not fetched again); a cut-off download of its second
    // is resumed by range; a corrupt partial of its third is thrown away and fetched whole.
    let big = manifest(&reg, "big");
    let layer = |i: usize| {
        big["layers"][i]["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    let downloads = state.join("images/downloads");
    let second = curl(&reg, &format!("/v2/big/blobs/{}", layer(1)), "*/*");
    std::fs::write(
        downloads.join(format!("{}.partial", &layer(1)[7..])),
        &second[..second.len() / 2],
    )
    .expect("plant partial");
    std::fs::write(
        downloads.join(format!("{}.partial", &layer(2)[7..])),
        b"not these bytes",
    )
    .expect("plant corrupt partial");
    let first_try = p.pull(&format!("{a}/big:1"), None, 0).await;
    let e = first_try
        .expect_err("the corrupt partial fails its layer's digest")
        .to_string();
    assert!(e.contains(&layer(2)) && e.contains("corrupt"), "{e}");
    assert!(
        !downloads
            .join(format!("{}.partial", &layer(2)[7..]))
            .exists(),
        "the corrupt partial is removed"
    );
    assert!(
        store.get(&format!("{a}/big:1")).is_err(),
        "nothing half-made named"
    );
    let got = p
        .pull(&format!("{a}/big:1"), None, 0)
        .await
        .expect("big:1 on retry");
    assert_eq!(got.layers.len(), 5);
    assert_eq!(
        gets(&reg, &format!("/v2/big/blobs/{}", layer(0)), 200),
        0,
        "busybox's layer was in the store"
    );
    assert_eq!(
        gets(&reg, &format!("/v2/big/blobs/{}", layer(1)), 206),
        1,
        "the cut-off layer resumed by range:\n{}",
        log(&reg)
    );
    assert_eq!(
        gets(&reg, &format!("/v2/big/blobs/{}", layer(3)), 200),
        1,
        "a layer fetched by the failed try is not fetched again"
    );
    let names: Vec<_> = std::fs::read_dir(&downloads)
        .expect("downloads")
        .flatten()
        .collect();
    assert!(
        names.is_empty(),
        "downloads emptied once the image is stored: {names:?}"
    );

    // A Docker Hub image through a mirror (the origin is not reachable from here): the
    // mirror's own login, its library/ repository.
    let (store3, p3) = puller_with(
        &work.path().join("state3"),
        &reg,
        &login(&reg, "s3cret-pw"),
        vec!["127.0.0.1:1".into(), reg.address.clone()],
    );
    let hub = p3
        .pull("busybox:1", None, 0)
        .await
        .expect("busybox:1 through the mirror");
    assert_eq!(hub.name, "busybox:1");
    assert!(store3.get("docker.io/library/busybox:1").is_ok());
    assert_eq!(
        gets(&reg, "/v2/library/busybox/manifests/1", 200),
        1,
        "asked of the second mirror after the first failed"
    );

    // A second store, new to every image.
    let (store2, p2) = puller(&work.path().join("state2"), &reg, &login(&reg, "s3cret-pw"));

    // Two pulls of one image new to this store at once: one pull.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let manifest_gets = || gets(&reg, "/v2/zstd/manifests/1", 200);
    let before = manifest_gets();
    let zref = format!("{a}/zstd:1");
    let (x, y) = tokio::join!(p2.pull(&zref, None, now), p2.pull(&zref, None, now));
    assert_eq!(x.expect("first").id, y.expect("second").id);
    assert!(store2.get(&zref).is_ok());
    assert_eq!(
        manifest_gets() - before,
        1,
        "the second pull took the first's image"
    );

    // Two images sharing a layer, pulled at once: the layer is fetched once, into one file.
    let shared = layer(0);
    let blob_gets = || {
        gets(&reg, &format!("/v2/busybox/blobs/{shared}"), 200)
            + gets(&reg, &format!("/v2/big/blobs/{shared}"), 200)
    };
    let before = blob_gets();
    let (bref, gref) = (format!("{a}/busybox:1"), format!("{a}/big:1"));
    let (bb, bg) = tokio::join!(p2.pull(&bref, None, 0), p2.pull(&gref, None, 0));
    assert_eq!(bb.expect("busybox:1").layers[0], shared);
    assert_eq!(bg.expect("big:1").layers[0], shared);
    assert_eq!(blob_gets() - before, 1, "the shared layer fetched once");
    assert!(spool_is_empty(&work.path().join("state2")));

    // A plain-HTTP registry: refused as HTTPS, pulled once named in insecure_registries.
    let plain_dir = work.path().join("plain");
    let plain_port = 20000 + ((std::process::id() + 1) % 20000);
    let plain = Registry {
        dir: plain_dir.clone(),
        address: format!("127.0.0.1:{plain_port}"),
    };
    run(
        &[
            "plain",
            plain_dir.to_str().expect("utf-8"),
            &plain_port.to_string(),
        ],
        &plain_dir,
    );
    let (_, strict) = puller(&work.path().join("state5"), &reg, "{}");
    let e = strict
        .pull(&format!("{}/busybox:1", plain.address), None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&plain.address), "{e}");
    let (store5, lax) = puller_insecure(
        &work.path().join("state5"),
        &reg,
        vec![plain.address.clone()],
    );
    lax.pull(&format!("{}/busybox:1", plain.address), None, 0)
        .await
        .expect("busybox:1 over plain HTTP");
    assert!(store5.get(&format!("{}/busybox:1", plain.address)).is_ok());
    drop(plain);

    // A blob the registry serves corrupt (its storage changed under it) is refused by digest.
    let (store4, p4) = puller(&work.path().join("state4"), &reg, &login(&reg, "s3cret-pw"));
    let hex = &layer(4)[7..];
    let data = reg.dir.join(format!(
        "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).expect("registry blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, &bytes).expect("corrupt it");
    let e = p4
        .pull(&format!("{a}/big:1"), None, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(hex) && e.contains("corrupt"), "{e}");
    assert!(store4.get(&format!("{a}/big:1")).is_err());
    assert!(spool_is_empty(&work.path().join("state4")));
}
