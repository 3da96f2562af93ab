use super::*;
use std::os::fd::AsFd;

/// A root to work beneath and, beside it, a victim directory with a file in it that no
/// operation beneath the root may touch.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let victim = d.path().join("victim");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host file").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("a")).unwrap();
    (d, root, victim)
}

fn victim_unchanged(victim: &Path) {
    let names: Vec<_> = std::fs::read_dir(victim)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep"], "the victim directory changed");
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "host file"
    );
}

#[test]
fn a_directory_through_a_symlink_is_refused_naming_the_link_and_nothing_is_made() {
    let (_d, root, victim) = setup();
    let r = open_root(&root).unwrap();
    let e = dir(r.as_fd(), Path::new("a/made/deeper"), true).unwrap_err();
    assert!(
        matches!(&e, BeneathError::Symlink { link, .. } if link == Path::new("a")),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "a/made/deeper passes through the symbolic link a"
    );
    victim_unchanged(&victim);
}

#[test]
fn missing_directories_are_made_beneath_the_root() {
    let (_d, root, _victim) = setup();
    let r = open_root(&root).unwrap();
    dir(r.as_fd(), Path::new("/x/y/z"), true).unwrap();
    assert!(root.join("x/y/z").is_dir());
    assert!(dir(r.as_fd(), Path::new("q"), false).is_err());
}

#[test]
fn parent_dir_components_are_refused() {
    let (_d, root, victim) = setup();
    let r = open_root(&root).unwrap();
    for p in ["../victim/keep", "x/../../victim/keep"] {
        let e = open_file(r.as_fd(), Path::new(p)).unwrap_err();
        assert!(matches!(e, BeneathError::Escapes { .. }), "{p}: {e}");
        let e = dir(r.as_fd(), Path::new(p), true).unwrap_err();
        assert!(matches!(e, BeneathError::Escapes { .. }), "{p}: {e}");
    }
    victim_unchanged(&victim);
}

#[test]
fn a_file_through_a_symlink_or_that_is_a_symlink_is_not_read() {
    let (_d, root, victim) = setup();
    std::os::unix::fs::symlink(victim.join("keep"), root.join("passwd")).unwrap();
    let r = open_root(&root).unwrap();
    for p in ["a/keep", "passwd"] {
        let e = read_bounded(r.as_fd(), Path::new(p), 1 << 20).unwrap_err();
        assert!(matches!(e, BeneathError::Symlink { .. }), "{p}: {e}");
    }
}

#[test]
fn a_fifo_is_refused_without_blocking_and_a_large_file_past_its_bound() {
    let (_d, root, _victim) = setup();
    nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::write(root.join("big"), vec![b'x'; 100]).unwrap();
    let r = open_root(&root).unwrap();
    let e = open_file(r.as_fd(), Path::new("fifo")).unwrap_err();
    assert!(matches!(e, BeneathError::NotAFile { .. }), "{e}");
    let e = read_bounded(r.as_fd(), Path::new("big"), 99).unwrap_err();
    assert_eq!(e.to_string(), "big is larger than 99 bytes");
    assert_eq!(
        read_bounded(r.as_fd(), Path::new("big"), 100)
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn remove_takes_a_tree_and_its_links_but_not_what_they_point_at() {
    let (_d, root, victim) = setup();
    std::fs::create_dir_all(root.join("t/sub")).unwrap();
    std::fs::write(root.join("t/sub/f"), "x").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("t/sub/out")).unwrap();
    let r = open_root(&root).unwrap();
    remove(r.as_fd(), std::ffi::OsStr::new("t")).unwrap();
    assert!(!root.join("t").exists());
    // The link at the top is removed as a link.
    remove(r.as_fd(), std::ffi::OsStr::new("a")).unwrap();
    assert!(root.join("a").symlink_metadata().is_err());
    remove(r.as_fd(), std::ffi::OsStr::new("absent")).unwrap();
    victim_unchanged(&victim);
}
