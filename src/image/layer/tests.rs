use super::*;

/// One entry of a hand-made layer: a file, a symbolic link or a hard link.
enum E<'a> {
    File(&'a str, &'a str),
    Symlink(&'a str, &'a Path),
    Hardlink(&'a str, &'a Path),
}

/// A layer tarball of `entries`, names written raw (tar's builder refuses `..`, an attacker's
/// archive does not).
fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                (n, d.as_bytes())
            }
            E::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                (n, b"")
            }
            E::Hardlink(n, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(t).unwrap();
                (n, b"")
            }
        };
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A victim directory outside the layer, with a file no layer may touch.
struct Host {
    _d: tempfile::TempDir,
    dir: PathBuf,
    victim: PathBuf,
}

fn host() -> Host {
    let d = tempfile::tempdir().unwrap();
    let victim = d.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host file").unwrap();
    Host {
        dir: d.path().to_owned(),
        victim,
        _d: d,
    }
}

impl Host {
    fn unpack(&self, entries: &[E]) -> Result<PathBuf, LayerError> {
        let blob = self.dir.join("blob");
        std::fs::write(&blob, layer(entries)).unwrap();
        let out = self.dir.join("out");
        unpack(File::open(&blob).unwrap(), &blob, &out).map(|()| out)
    }

    fn victim_unchanged(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.victim)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["keep"], "the host's directory changed");
        assert_eq!(
            std::fs::read_to_string(self.victim.join("keep")).unwrap(),
            "host file"
        );
        assert!(xattr::get(&self.victim, "trusted.overlay.opaque")
            .unwrap_or(None)
            .is_none());
        assert!(!self.dir.join("out").exists(), "a refused layer was kept");
    }
}

#[test]
fn plain_and_gzip_layers_unpack_the_same() {
    let d = tempfile::tempdir().unwrap();
    let data = crate::image::tests::tar_of(&[("etc/hostname", "box\n"), ("./bin/sh", "#!")]);
    std::fs::write(d.path().join("plain"), &data).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &data).unwrap();
    std::fs::write(d.path().join("gz"), gz.finish().unwrap()).unwrap();
    for name in ["plain", "gz"] {
        let out = d.path().join(format!("{name}.out"));
        let blob = d.path().join(name);
        unpack(File::open(&blob).unwrap(), &blob, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
            "box\n"
        );
        assert!(out.join("bin/sh").exists());
    }
}

#[test]
fn a_zstd_layer_unpacks_like_a_gzip_one() {
    let d = tempfile::tempdir().unwrap();
    let blob = d.path().join("z");
    let tar = layer(&[E::File("etc/hostname", "zbox\n")]);
    std::fs::write(&blob, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
    let out = d.path().join("out");
    unpack(File::open(&blob).unwrap(), &blob, &out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("etc/hostname")).unwrap(),
        "zbox\n"
    );
}

#[test]
fn a_corrupt_zstd_layer_is_an_error_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let blob = d.path().join("z");
    std::fs::write(&blob, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
    let e = unpack(File::open(&blob).unwrap(), &blob, &d.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("z"), "{e}");
    assert!(!d.path().join("out").exists());
    assert!(!d.path().join("out.unpacking").exists());
}

#[test]
fn a_whiteout_through_a_symlink_to_the_host_is_refused_naming_it() {
    let h = host();
    let e = h
        .unpack(&[E::Symlink("a", &h.victim), E::File("a/.wh.keep", "")])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "layer {}: entry a/.wh.keep is refused",
            h.dir.join("blob").display()
        )
    );
    assert!(matches!(e, LayerError::Refused { .. }), "{e}");
    h.victim_unchanged();
}

#[test]
fn an_opaque_marker_through_a_symlink_is_refused() {
    let h = host();
    let e = h
        .unpack(&[E::Symlink("a", &h.victim), E::File("a/.wh..wh..opq", "")])
        .unwrap_err();
    assert!(matches!(e, LayerError::Refused { .. }), "{e}");
    h.victim_unchanged();
}

#[test]
fn a_file_through_a_symlink_and_a_hard_link_out_are_refused() {
    let h = host();
    let through = h.unpack(&[E::Symlink("a", &h.victim), E::File("a/evil", "x")]);
    assert!(
        through.is_err(),
        "a file written through a link to the host"
    );
    h.victim_unchanged();
    let keep = h.victim.join("keep");
    let absolute = h.unpack(&[E::Hardlink("shadow", &keep)]);
    assert!(absolute.is_err(), "a hard link to a host file");
    h.victim_unchanged();
    let via_link = h.unpack(&[
        E::Symlink("a", &h.victim),
        E::Hardlink("shadow", Path::new("a/keep")),
    ]);
    assert!(
        via_link.is_err(),
        "a hard link through a symlink to a host file"
    );
    h.victim_unchanged();
}

#[test]
fn a_parent_dir_entry_is_refused_naming_it() {
    let h = host();
    let e = h.unpack(&[E::File("../victim/evil", "x")]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("entry ../victim/evil leaves the layer directory"),
        "{e}"
    );
    h.victim_unchanged();
}

#[test]
fn whiteouts_inside_the_layer_still_work() {
    let h = host();
    let out = h
        .unpack(&[
            E::File("etc/old", "x"),
            E::File("etc/.wh.old", ""),
            E::File("usr/.wh..wh..opq", ""),
            E::File("deep/er/.wh.gone", ""),
        ])
        .unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(out.join("etc/old"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert!(out.join("deep/er/gone").symlink_metadata().is_ok());
    assert_eq!(
        xattr::get(out.join("usr"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}

#[test]
fn an_absolute_entry_lands_inside_the_layer_and_not_on_the_host() {
    let h = host();
    let target = h.victim.join("evil");
    let name = target.to_str().unwrap().to_string();
    let out = h
        .unpack(&[E::File(&name, "x")])
        .expect("an absolute entry is the layer's own path");
    let names: Vec<_> = std::fs::read_dir(&h.victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "the host's directory changed");
    let inside = out.join(name.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "x");
}
