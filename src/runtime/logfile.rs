//! A container's log as readers see it: one stream of bytes whose offsets run on across the
//! shim's rotations. The shim writes `<name>.log`; past its size limit that file becomes
//! `<name>.log.1` (replacing the one before) and `<name>.log.base` records where in the stream
//! the new `<name>.log` begins. What is older than `.log.1` is in the journal only.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

fn with_suffix(log: &Path, suffix: &str) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Where the [`Marks`] of the last rotation are kept.
pub fn base_path(log: &Path) -> PathBuf {
    with_suffix(log, ".base")
}

/// The file before the current one.
pub fn rotated_path(log: &Path) -> PathBuf {
    with_suffix(log, ".1")
}

/// What the last rotation left: the stream offset of the current file's first byte, and the
/// inodes of the current file and of `.1` then. A reader that finds other inodes is between
/// a rotation's rename and these marks, and reads nothing until the marks are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    pub base: u64,
    pub current_ino: u64,
    pub rotated_ino: u64,
}

/// The marks of the last rotation; `None` before any.
pub fn marks(log: &Path) -> Option<Marks> {
    let text = std::fs::read_to_string(base_path(log)).ok()?;
    let mut n = text.split_whitespace().map(|w| w.parse::<u64>().ok());
    Some(Marks {
        base: n.next()??,
        current_ino: n.next()??,
        rotated_ino: n.next()??,
    })
}

/// Records the marks of a rotation, whole or not at all.
pub fn write_marks(log: &Path, m: &Marks) -> std::io::Result<()> {
    let text = format!("{} {} {}\n", m.base, m.current_ino, m.rotated_ino);
    crate::fsutil::write_atomic(&base_path(log), text.as_bytes())
}

/// The stream offset of the current file's first byte (0 before any rotation).
pub fn base(log: &Path) -> u64 {
    marks(log).map_or(0, |m| m.base)
}

/// An open file, if it is the one the marks name (any, without marks).
fn open_checked(path: &Path, ino: Option<u64>) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let f = File::open(path).ok()?;
    match ino {
        Some(want) if f.metadata().ok()?.ino() != want => None,
        _ => Some(f),
    }
}

fn read_from(mut f: File, at: u64, max: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(at)).is_ok() {
        let _ = f.take(max).read_to_end(&mut buf);
    }
    buf
}

/// At most `max` bytes of the stream from `offset`, and the offset to ask for next. An
/// offset older than what is kept reads from the oldest byte kept; in the moment of a
/// rotation nothing is read (the next call reads on).
pub fn read(log: &Path, offset: u64, max: usize) -> (Vec<u8>, u64) {
    let m = marks(log);
    let base = m.map_or(0, |m| m.base);
    let max = max as u64;
    let Some(current) = open_checked(log, m.map(|m| m.current_ino)) else {
        return (Vec::new(), offset);
    };
    if offset < base {
        let rotated_path = rotated_path(log);
        if let Some(rotated) = open_checked(&rotated_path, m.map(|m| m.rotated_ino)) {
            let len = rotated.metadata().map(|md| md.len()).unwrap_or(0);
            let start = base.saturating_sub(len);
            let from = offset.max(start);
            let data = read_from(rotated, from - start, max.min(base - from));
            if !data.is_empty() {
                let next = from + data.len() as u64;
                return (data, next);
            }
        }
    }
    let from = offset.max(base);
    let data = read_from(current, from - base, max);
    let next = from + data.len() as u64;
    (data, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the whole stream from `offset` in pieces of `max`, as `berthctl logs` does.
    fn drain(log: &Path, mut offset: u64, max: usize) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        loop {
            let (data, next) = read(log, offset, max);
            if data.is_empty() {
                return (out, offset);
            }
            out.extend(data);
            offset = next;
        }
    }

    #[test]
    fn without_rotation_the_offset_is_the_files() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("c.log");
        std::fs::write(&log, "hello\n").unwrap();
        assert_eq!(read(&log, 0, 3), (b"hel".to_vec(), 3));
        assert_eq!(drain(&log, 3, 2), (b"lo\n".to_vec(), 6));
    }

    #[test]
    fn offsets_run_on_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("c.log");
        // The stream "aaaa" "bbbb" "cc": rotated twice, so "aaaa" is gone.
        std::fs::write(rotated_path(&log), "bbbb").unwrap();
        std::fs::write(&log, "cc").unwrap();
        mark(&log, 8);
        assert_eq!(drain(&log, 6, 3), (b"bbcc".to_vec(), 10));
        // An offset older than what is kept starts at the oldest kept byte.
        assert_eq!(drain(&log, 0, 100), (b"bbbbcc".to_vec(), 10));
        assert_eq!(read(&log, 10, 100), (Vec::new(), 10));
    }

    #[test]
    fn a_rotated_file_already_gone_reads_on_in_the_current_one() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("c.log");
        std::fs::write(&log, "new").unwrap();
        std::fs::write(base_path(&log), format!("100 {} 0", ino(&log))).unwrap();
        assert_eq!(read(&log, 40, 100), (b"new".to_vec(), 103));
    }

    #[test]
    fn between_a_rotations_rename_and_its_marks_nothing_is_read() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("c.log");
        std::fs::write(rotated_path(&log), "bbbb").unwrap();
        std::fs::write(&log, "cc").unwrap();
        mark(&log, 8);
        // The shim renames c.log to .1 and starts a new c.log; the marks are the old ones.
        std::fs::rename(&log, rotated_path(&log)).unwrap();
        std::fs::write(&log, "dd").unwrap();
        assert_eq!(read(&log, 4, 100), (Vec::new(), 4), "behind the base");
        assert_eq!(read(&log, 9, 100), (Vec::new(), 9), "at the tail");
        // Once the marks are written, the stream reads on whole.
        mark(&log, 10);
        assert_eq!(drain(&log, 9, 100), (b"cdd".to_vec(), 12));
    }

    fn ino(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    /// The marks a rotation that left the current base at `base` writes.
    fn mark(log: &Path, base: u64) {
        write_marks(
            log,
            &Marks {
                base,
                current_ino: ino(log),
                rotated_ino: ino(&rotated_path(log)),
            },
        )
        .unwrap();
    }
}
