//! A microVM container's stdout and stderr inside the guest: the read ends of its pipes,
//! drained without blocking into text the agent sends to the host, which writes the container's
//! log file and the journal as a container task's shim does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// One stream of one container.
pub struct Stream {
    fd: OwnedFd,
    pub name: String,
    pub stderr: bool,
    pending: Vec<u8>,
}

/// Text a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub name: String,
    pub stderr: bool,
    pub data: String,
}

impl Stream {
    pub fn new(fd: OwnedFd, name: &str, stderr: bool) -> Stream {
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        Stream {
            fd,
            name: name.to_string(),
            stderr,
            pending: Vec::new(),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What is readable now, as text; false once the stream has ended.
    pub fn drain(&mut self) -> (Option<Chunk>, bool) {
        let mut buf = [0u8; 16 * 1024];
        let open = loop {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) => break false,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => break true,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break false,
            }
            // Bounded frames: a chatty container is sent in pieces, not one huge message.
            if self.pending.len() >= 256 * 1024 {
                break true;
            }
        };
        let data = take_text(&mut self.pending, !open);
        let chunk = (!data.is_empty()).then(|| Chunk {
            name: self.name.clone(),
            stderr: self.stderr,
            data,
        });
        (chunk, open)
    }
}

/// Takes the whole UTF-8 characters at the front of `pending` as text. Invalid bytes become
/// U+FFFD; a character cut off at the end stays for the next read, unless the stream has
/// `ended`.
pub fn take_text(pending: &mut Vec<u8>, ended: bool) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(pending) {
            Ok(s) => {
                out.push_str(s);
                pending.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&pending[..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pending.drain(..valid + bad);
                    }
                    None if ended => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pending.clear();
                        return out;
                    }
                    None => {
                        pending.drain(..valid);
                        return out;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let euro = "€".as_bytes();
        let mut pending = b"price: ".to_vec();
        pending.extend_from_slice(&euro[..2]);
        assert_eq!(take_text(&mut pending, false), "price: ");
        assert_eq!(pending, &euro[..2]);
        pending.extend_from_slice(&euro[2..]);
        pending.extend_from_slice(b"5\n");
        assert_eq!(take_text(&mut pending, false), "€5\n");
        assert!(pending.is_empty());
    }

    #[test]
    fn invalid_bytes_are_replaced_and_a_cut_character_at_the_end_too() {
        let mut pending = vec![b'a', 0xff, b'b', 0xe2, 0x82];
        assert_eq!(take_text(&mut pending, false), "a\u{fffd}b");
        assert_eq!(take_text(&mut pending, true), "\u{fffd}");
        assert!(pending.is_empty());
    }

    #[test]
    fn a_pipe_is_drained_until_its_writer_closes() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut s = Stream::new(r, "web", true);
        nix::unistd::write(&w, b"hello\n").unwrap();
        let (chunk, open) = s.drain();
        assert!(open);
        assert_eq!(
            chunk,
            Some(Chunk {
                name: "web".into(),
                stderr: true,
                data: "hello\n".into()
            })
        );
        drop(w);
        assert_eq!(s.drain(), (None, false));
    }
}
