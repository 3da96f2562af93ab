//! A container's stdout and stderr: read from pipes by the shim, appended to the container's
//! log file as they come, and sent to the journal line by line with berth's fields. The file
//! rotates by size: past its limit it becomes `<name>.log.1` (replacing the one before) and a
//! new one starts, its first byte's place in the whole stream kept in `<name>.log.base`, so
//! readers' offsets run on across rotations (`runtime::logfile`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use crate::runtime::logfile;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Longest line sent to the journal as one entry; longer lines are split.
const MAX_LINE: usize = 16 * 1024;

/// The journal's native protocol socket, when there is a journal.
pub struct Journal {
    sock: Option<UnixDatagram>,
    fields: String,
}

impl Journal {
    pub fn open(task_id: &str, family: &str) -> Journal {
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.connect(JOURNAL_SOCKET).map(|_| s))
            .ok();
        Journal {
            sock,
            fields: format!(
                "BERTH_TASK_ID={task_id}\nBERTH_FAMILY={family}\nSYSLOG_IDENTIFIER=berth-{family}\n"
            ),
        }
    }

    fn send(&self, container: &str, priority: u8, line: &[u8]) {
        let Some(sock) = &self.sock else { return };
        let mut msg = format!(
            "{}BERTH_CONTAINER={container}\nPRIORITY={priority}\n",
            self.fields
        )
        .into_bytes();
        if line.contains(&b'\n') {
            msg.extend_from_slice(b"MESSAGE\n");
            msg.extend_from_slice(&(line.len() as u64).to_le_bytes());
            msg.extend_from_slice(line);
            msg.push(b'\n');
        } else {
            msg.extend_from_slice(b"MESSAGE=");
            msg.extend_from_slice(line);
            msg.push(b'\n');
        }
        // The journal may drop entries under pressure; the log file is the record.
        let _ = sock.send(&msg);
    }
}

/// One stream of one container as text arrives: appended to the log file, and cut into
/// journal entries at line ends. A microVM task's shim feeds it what the agent relays.
pub struct Lines {
    container: String,
    priority: u8,
    pending: Vec<u8>,
}

impl Lines {
    pub fn new(container: &str, stderr: bool) -> Lines {
        Lines {
            container: container.to_string(),
            priority: if stderr { 3 } else { 6 },
            pending: Vec::new(),
        }
    }

    pub fn feed(&mut self, data: &[u8], file: &mut LogFile, journal: &Journal) {
        file.write(data);
        self.pending.extend_from_slice(data);
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            journal.send(&self.container, self.priority, &line[..line.len() - 1]);
        }
        if self.pending.len() > MAX_LINE {
            let line: Vec<u8> = self.pending.drain(..).collect();
            journal.send(&self.container, self.priority, &line);
        }
    }

    /// Sends a last line that had no end.
    pub fn flush(&mut self, journal: &Journal) {
        if !self.pending.is_empty() {
            let line: Vec<u8> = self.pending.drain(..).collect();
            journal.send(&self.container, self.priority, &line);
        }
    }
}

/// One stream of one container, read from its pipe.
pub struct Pump {
    pub fd: OwnedFd,
    lines: Lines,
}

impl Pump {
    pub fn new(fd: OwnedFd, container: &str, stderr: bool) -> Pump {
        Pump {
            fd,
            lines: Lines::new(container, stderr),
        }
    }

    /// Moves what is readable now to the file and the journal; false at end of stream.
    pub fn pump(&mut self, file: &mut LogFile, journal: &Journal) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    self.lines.flush(journal);
                    return false;
                }
                Ok(n) => self.lines.feed(&buf[..n], file, journal),
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.lines.flush(journal);
                    return false;
                }
            }
        }
    }
}

/// A container's log file, rotated past `max_bytes` (0: never).
pub struct LogFile {
    path: PathBuf,
    file: File,
    max_bytes: u64,
    size: u64,
    /// Marks of a rotation not yet on disk (a full disk refused them); written at the next
    /// write, and until then readers read nothing new.
    pending: Option<logfile::Marks>,
    /// A rotation failed and said so: said once, not once per read.
    complained: bool,
}

impl LogFile {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<LogFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_owned(),
            file,
            max_bytes,
            size,
            pending: None,
            complained: false,
        })
    }

    /// Puts what was written on the disk (a container's last words before its exit is told).
    pub fn sync(&self) {
        let _ = self.file.sync_data();
    }

    /// Appends `data`, rotating at a line's end once the file reaches its limit (a line
    /// longer than the limit is cut at twice it), so each file starts with a whole line.
    pub fn write(&mut self, data: &[u8]) {
        self.write_marks();
        let crosses = self.max_bytes > 0 && self.size + data.len() as u64 >= self.max_bytes;
        let at_line_end = crosses
            .then(|| data.iter().rposition(|b| *b == b'\n').map(|p| p + 1))
            .flatten();
        match at_line_end {
            Some(end) => {
                self.append(&data[..end]);
                self.rotate_or_say();
                self.append(&data[end..]);
            }
            None => {
                self.append(data);
                if self.max_bytes > 0 && self.size >= self.max_bytes.saturating_mul(2) {
                    self.rotate_or_say();
                }
            }
        }
    }

    /// A write the disk refuses is lost (the journal has the lines too); the size counts what
    /// the file holds, which the next rotation reads from the file itself.
    fn append(&mut self, data: &[u8]) {
        if !data.is_empty() && self.file.write_all(data).is_ok() {
            self.size += data.len() as u64;
        }
    }

    fn rotate_or_say(&mut self) {
        if let Err(e) = self.rotate() {
            self.say(&format!("not rotated: {e}"));
        }
    }

    fn say(&mut self, what: &str) {
        if !self.complained {
            self.complained = true;
            eprintln!("berth-shim: log {}: {what}", self.path.display());
        }
    }

    /// The file moves to `.1` and a new one starts at once; then the marks say where the new
    /// one begins in the stream and which files they are, so a reader in between (seeing
    /// other inodes than the marks name) reads nothing rather than the wrong file.
    fn rotate(&mut self) -> std::io::Result<()> {
        let old = self.file.metadata()?;
        let base = logfile::base(&self.path) + old.len();
        std::fs::rename(&self.path, logfile::rotated_path(&self.path))?;
        let new = match open_append(&self.path) {
            Ok(f) => f,
            Err(e) => {
                // Back as it was: the stream stays in one file rather than none.
                let _ = std::fs::rename(logfile::rotated_path(&self.path), &self.path);
                return Err(e);
            }
        };
        let current_ino = new.metadata()?.ino();
        self.file = new;
        self.size = 0;
        self.pending = Some(logfile::Marks {
            base,
            current_ino,
            rotated_ino: old.ino(),
        });
        self.write_marks();
        Ok(())
    }

    fn write_marks(&mut self) {
        let Some(m) = self.pending else { return };
        match logfile::write_marks(&self.path, &m) {
            Ok(()) => self.pending = None,
            Err(e) => self.say(&format!("rotation marks not written (tried again): {e}")),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_rotates_at_a_line_end_and_reads_on_as_one_stream() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.log");
        let mut log = LogFile::open(&path, 10).unwrap();
        // Written in pieces that do not follow the lines, as a pipe delivers them.
        for piece in ["line-1\nli", "ne-2\nline-3\n", "line-4\nline-5\n"] {
            log.write(piece.as_bytes());
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(logfile::rotated_path(&path)).unwrap();
        assert!(
            rotated.ends_with('\n') && rotated.starts_with("line-"),
            "{rotated:?}"
        );
        assert!(
            current.is_empty() || current.starts_with("line-"),
            "{current:?}"
        );
        // The stream from the oldest byte kept, through the runtime's reader.
        let (data, next) = logfile::read(&path, 0, 1 << 20);
        let text = String::from_utf8(data).unwrap();
        assert!(text.ends_with("line-4\nline-5\n"), "{text:?}");
        assert_eq!(next, logfile::base(&path) + current.len() as u64);
        let m = logfile::marks(&path).expect("marks after a rotation");
        assert_eq!(m.current_ino, std::fs::metadata(&path).unwrap().ino());
    }
}
