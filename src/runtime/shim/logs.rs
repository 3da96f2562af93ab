//! A container's stdout and stderr: read from pipes by the shim, appended to the container's
//! log file as they come, and sent to the journal line by line with berth's fields.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

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

    pub fn feed(&mut self, data: &[u8], file: &mut File, journal: &Journal) {
        let _ = file.write_all(data);
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
    pub fn pump(&mut self, file: &mut File, journal: &Journal) -> bool {
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

pub fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
