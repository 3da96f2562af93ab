//! Writes an initramfs in the kernel's `newc` cpio format, uncompressed: under emulation the
//! guest would spend seconds decompressing, and the kernel takes a plain archive as it is
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Every entry gets its own inode
//! number and one link, so the kernel never tries to join hard links.

use std::io::Write;

const MAGIC: &[u8] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// One archive being written; parents must be added before their children.
pub struct Initramfs<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Initramfs<W> {
    pub fn new(out: W) -> Self {
        Initramfs {
            out,
            ino: 0,
            written: 0,
        }
    }

    pub fn dir(&mut self, path: &str, perm: u32) -> std::io::Result<()> {
        self.entry(
            Header {
                name: path,
                mode: S_IFDIR | perm,
                nlink: 2,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> std::io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            std::io::Error::other(format!("{path}: too large for a cpio entry (4 GiB)"))
        })?;
        self.entry(
            Header {
                name: path,
                mode: S_IFREG | perm,
                nlink: 1,
                size,
                rdev: (0, 0),
            },
            data,
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> std::io::Result<()> {
        self.entry(
            Header {
                name: path,
                mode: S_IFLNK | 0o777,
                nlink: 1,
                size: target.len() as u32,
                rdev: (0, 0),
            },
            target.as_bytes(),
        )
    }

    /// A character device node: only header fields, so no privilege is needed to make one.
    pub fn char_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> std::io::Result<()> {
        self.entry(
            Header {
                name: path,
                mode: S_IFCHR | perm,
                nlink: 1,
                size: 0,
                rdev: (major, minor),
            },
            &[],
        )
    }

    /// Ends the archive with its trailer and hands the writer back.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.ino = 0;
        self.entry(
            Header {
                name: TRAILER,
                mode: 0,
                nlink: 1,
                size: 0,
                rdev: (0, 0),
            },
            &[],
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, h: Header<'_>, data: &[u8]) -> std::io::Result<()> {
        let name = h.name.trim_start_matches('/');
        if h.name != TRAILER {
            self.ino += 1;
        }
        let namesize = name.len() as u32 + 1;
        let fields = [
            self.ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdev.0, h.rdev.1, namesize, 0,
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for f in fields {
            header.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.put(&header)?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// newc aligns every name and every body to four bytes from the archive's start.
    fn pad(&mut self) -> std::io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: (name, mode, rdev, body).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// The entries of a newc archive, read back by the format's rules.
    fn read_back(mut a: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let total = a.len();
        loop {
            assert_eq!(&a[..6], MAGIC, "magic at offset {}", total - a.len());
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, rdev, namesize) =
                (field(1), field(6), (field(9), field(10)), field(11));
            let name = std::str::from_utf8(&a[110..110 + namesize as usize - 1])
                .unwrap()
                .to_string();
            let body_at = (110 + namesize as usize).div_ceil(4) * 4;
            let body = a[body_at..body_at + size as usize].to_vec();
            let next = (body_at + size as usize).div_ceil(4) * 4;
            if name == TRAILER {
                assert_eq!(next, a.len(), "nothing after the trailer but padding");
                return out;
            }
            out.push((name, mode, rdev, body));
            a = &a[next..];
        }
    }

    #[test]
    fn entries_read_back_with_their_kinds_and_bodies() {
        let mut r = Initramfs::new(Vec::new());
        r.dir("/dev", 0o755).unwrap();
        r.char_device("/dev/console", 0o600, 5, 1).unwrap();
        r.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        r.file("/odd", 0o644, b"abcde").unwrap();
        r.symlink("/lib64", "lib").unwrap();
        let bytes = r.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read_back(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "odd", "lib64"]);
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!((entries[1].1, entries[1].2), (S_IFCHR | 0o600, (5, 1)));
        assert_eq!(entries[2].3, b"#!/bin/sh\n");
        assert_eq!(entries[3].3, b"abcde");
        assert_eq!(
            (entries[4].1, entries[4].3.as_slice()),
            (S_IFLNK | 0o777, &b"lib"[..])
        );
    }

    #[test]
    fn every_entry_has_its_own_inode() {
        let mut r = Initramfs::new(Vec::new());
        r.file("/a", 0o644, b"1").unwrap();
        r.file("/b", 0o644, b"2").unwrap();
        let bytes = r.finish().unwrap();
        let ino = |at: usize| &bytes[at + 6..at + 14];
        let second = (110 + 2usize).div_ceil(4) * 4 + 4;
        assert_ne!(ino(0), ino(second));
    }
}
