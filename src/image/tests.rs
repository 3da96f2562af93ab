use std::io::Write;

use sha2::{Digest, Sha256};

use super::*;

/// A tar stream of `files` (path, content), for layers and whole archives alike.
pub(super) fn tar_of<P: AsRef<std::path::Path>, D: AsRef<[u8]>>(files: &[(P, D)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let data = data.as_ref();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

const CONFIG: &str =
    r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"]}}"#;

/// A tar stream of an OCI layout with one image of one layer.
fn oci_archive(ref_name: &str, corrupt: bool) -> Vec<u8> {
    let layer = tar_of(&[("bin/sh", "#!"), ("etc/os-release", "ID=test\n")]);
    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}]}}"#,
        sha(CONFIG.as_bytes()),
        CONFIG.len(),
        sha(&layer),
        layer.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{ref_name}"}}}}]}}"#,
        sha(manifest.as_bytes()),
        manifest.len()
    );
    let stored_layer = if corrupt {
        tar_of(&[("bin/sh", "evil")])
    } else {
        layer.clone()
    };
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index.into_bytes()),
        (
            format!("blobs/sha256/{}", sha(manifest.as_bytes())),
            manifest.into_bytes(),
        ),
        (
            format!("blobs/sha256/{}", sha(CONFIG.as_bytes())),
            CONFIG.as_bytes().to_vec(),
        ),
        (format!("blobs/sha256/{}", sha(&layer)), stored_layer),
    ];
    tar_of(&files)
}

fn docker_archive() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_of(&[("bin/sh", "#!")])).unwrap();
    let layer = gz.finish().unwrap();
    let manifest = r#"[{"Config":"cfg.json","RepoTags":["docker.io/library/busybox:1.36"],"Layers":["abc/layer.tar"]}]"#;
    tar_of(&[
        ("manifest.json", manifest.as_bytes().to_vec()),
        ("cfg.json", CONFIG.as_bytes().to_vec()),
        ("abc/layer.tar", layer),
    ])
}

#[test]
fn oci_layout_imports_under_the_given_name_and_unpacks_its_layer() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let rec = store
        .import(&oci_archive("latest", false)[..], Some("busybox"), 1)
        .unwrap();
    assert_eq!(rec.name, "busybox:latest");
    assert_eq!(rec.config.cmd, Some(vec!["sh".to_string()]));
    let dir = store.layer_dir(&rec.layers[0]);
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/os-release")).unwrap(),
        "ID=test\n"
    );
    assert_eq!(store.get("docker.io/library/busybox").unwrap().id, rec.id);
    // The index survives a reopen.
    let again = ImageStore::open(d.path()).unwrap();
    assert_eq!(again.list(), vec![rec]);
}

#[test]
fn oci_layout_naming_only_a_tag_needs_a_name() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let e = store
        .import(&oci_archive("latest", false)[..], None, 1)
        .unwrap_err();
    assert!(e.to_string().contains("--name"), "{e}");
    assert!(store.list().is_empty());
}

#[test]
fn corrupt_blob_is_refused_and_nothing_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let e = store
        .import(&oci_archive("app:1", true)[..], None, 1)
        .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(store.list().is_empty());
    assert_eq!(
        std::fs::read_dir(d.path().join("spool")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(d.path().join("layers")).unwrap().count(),
        0
    );
}

#[test]
fn docker_archive_imports_under_its_repo_tag() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let rec = store.import(&docker_archive()[..], None, 1).unwrap();
    assert_eq!(rec.name, "busybox:1.36");
    assert!(store.layer_dir(&rec.layers[0]).join("bin/sh").is_file());
}

#[test]
fn remove_keeps_layers_another_image_shares() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let a = store
        .import(&oci_archive("a:1", false)[..], None, 1)
        .unwrap();
    store
        .import(&oci_archive("b:1", false)[..], None, 2)
        .unwrap();
    store.remove("a:1").unwrap();
    assert!(store.layer_dir(&a.layers[0]).is_dir());
    store.remove("b:1").unwrap();
    assert!(!store.layer_dir(&a.layers[0]).exists());
    assert!(matches!(store.remove("b:1"), Err(ImageError::NotFound(_))));
}

#[test]
fn layers_a_live_task_runs_on_stay_when_the_last_image_naming_them_goes() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let a = store
        .import(&oci_archive("a:1", false)[..], None, 1)
        .unwrap();
    let live = std::collections::BTreeSet::from([a.layers[0].clone()]);
    store.remove_keeping("a:1", &live).unwrap();
    assert!(
        store.layer_dir(&a.layers[0]).is_dir(),
        "a live task's lower layer"
    );
    assert!(store.get("a:1").is_err());
}

#[test]
fn garbage_is_refused_naming_both_formats() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let e = store
        .import(&tar_of(&[("hello", "x")])[..], None, 1)
        .unwrap_err();
    assert!(e.to_string().contains("OCI image layout"), "{e}");
}

#[test]
fn a_refused_replacement_leaves_the_name_as_it_was_and_a_new_name_is_not_asked() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(d.path()).unwrap();
    let first = store
        .import(&oci_archive("latest", false)[..], Some("busybox"), 1)
        .unwrap();
    let refuse = |n: &str| Err(format!("not {n}"));
    let e = store
        .import_checked(
            &oci_archive("latest", false)[..],
            Some("busybox"),
            2,
            &refuse,
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "not busybox:latest");
    assert_eq!(store.list(), vec![first]);
    store
        .import_checked(&oci_archive("latest", false)[..], Some("other"), 2, &refuse)
        .unwrap();
    assert_eq!(store.list().len(), 2);
}

#[test]
fn an_archive_whose_index_is_a_link_out_is_refused_and_nothing_is_kept() {
    let d = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&d.path().join("store")).unwrap();
    std::fs::write(
        d.path().join("outside.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = tar::Header::new_gnu();
    h.set_size(layout.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "oci-layout", &layout[..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    b.append_link(&mut link, "index.json", d.path().join("outside.json"))
        .unwrap();
    let archive = b.into_inner().unwrap();
    let e = store.import(&archive[..], Some("evil:1"), 1).unwrap_err();
    assert!(e.to_string().contains("index.json"), "{e}");
    assert!(store.list().is_empty(), "an image was kept");
}
