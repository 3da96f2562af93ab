//! Paths from untrusted input (an image's archive and layers, a working directory) opened
//! beneath a root directory one component at a time, never following a symbolic link and
//! never leaving by `..`: what `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` gives, done with
//! `openat(O_NOFOLLOW)` so that it also creates missing directories and runs on any kernel.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("{path} leaves its directory (an absolute path or `..`)")]
    Escapes { path: PathBuf },
    #[error("{path} passes through the symbolic link {link}")]
    Symlink { path: PathBuf, link: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The normal components of `rel`, or an error if any would leave the root. A leading `/` is
/// taken as the root itself (a tar entry `/etc/x` means `etc/x` of the layer).
pub fn components(rel: &Path) -> Result<Vec<&std::ffi::OsStr>, BeneathError> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(BeneathError::Escapes {
                    path: rel.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> BeneathError {
    BeneathError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens the trusted root directory itself (it may be reached through links of the host's).
pub fn open_root(root: &Path) -> Result<OwnedFd, BeneathError> {
    let f = File::open(root).map_err(|e| io(root, e))?;
    if !f.metadata().map_err(|e| io(root, e))?.is_dir() {
        return Err(io(root, Errno::ENOTDIR));
    }
    Ok(f.into())
}

/// One directory step from `dir`; a symbolic link there is refused, naming it.
fn step(
    dir: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    rel: &Path,
    so_far: &Path,
) -> Result<OwnedFd, BeneathError> {
    match openat(Some(dir.as_raw_fd()), name, DIR_FLAGS, Mode::empty()) {
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::ELOOP) => Err(BeneathError::Symlink {
            path: rel.to_owned(),
            link: so_far.to_owned(),
        }),
        Err(Errno::ENOTDIR) if is_symlink(dir, name) => Err(BeneathError::Symlink {
            path: rel.to_owned(),
            link: so_far.to_owned(),
        }),
        Err(e) => Err(io(so_far, e)),
    }
}

fn is_symlink(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> bool {
    fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

/// The directory `rel` beneath `root`, made (0755) where missing when `create`.
pub fn dir(root: BorrowedFd<'_>, rel: &Path, create: bool) -> Result<OwnedFd, BeneathError> {
    let mut fd = root.try_clone_to_owned().map_err(|e| io(rel, e))?;
    let mut so_far = PathBuf::new();
    for name in components(rel)? {
        so_far.push(name);
        let next = match step(fd.as_fd(), name, rel, &so_far) {
            Err(BeneathError::Io { source, .. })
                if create && source.raw_os_error() == Some(libc::ENOENT) =>
            {
                match mkdirat(Some(fd.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(&so_far, e)),
                }
                step(fd.as_fd(), name, rel, &so_far)?
            }
            other => other?,
        };
        fd = next;
    }
    Ok(fd)
}

/// The parent directory of `rel` beneath `root` and `rel`'s last name.
pub fn parent<'a>(
    root: BorrowedFd<'_>,
    rel: &'a Path,
    create: bool,
) -> Result<(OwnedFd, &'a std::ffi::OsStr), BeneathError> {
    let parts = components(rel)?;
    let Some((last, _)) = parts.split_last() else {
        return Err(BeneathError::Escapes {
            path: rel.to_owned(),
        });
    };
    let parent = rel.parent().unwrap_or(Path::new(""));
    Ok((dir(root, parent, create)?, last))
}

/// Opens the regular file `rel` beneath `root` for reading. A FIFO or device is refused
/// before any read could block on it.
pub fn open_file(root: BorrowedFd<'_>, rel: &Path) -> Result<File, BeneathError> {
    let (dir, name) = parent(root, rel, false)?;
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match openat(Some(dir.as_raw_fd()), name, flags, Mode::empty()) {
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(Errno::ELOOP) => {
            return Err(BeneathError::Symlink {
                path: rel.to_owned(),
                link: rel.to_owned(),
            })
        }
        Err(e) => return Err(io(rel, e)),
    };
    let file = File::from(fd);
    if !file.metadata().map_err(|e| io(rel, e))?.is_file() {
        return Err(BeneathError::NotAFile {
            path: rel.to_owned(),
        });
    }
    Ok(file)
}

/// Reads the regular file `rel` beneath `root`, refusing one larger than `limit` bytes.
pub fn read_bounded(root: BorrowedFd<'_>, rel: &Path, limit: u64) -> Result<Vec<u8>, BeneathError> {
    let file = open_file(root, rel)?;
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| io(rel, e))?;
    if out.len() as u64 > limit {
        return Err(BeneathError::TooLarge {
            path: rel.to_owned(),
            limit,
        });
    }
    Ok(out)
}

/// Removes `name` in `dir` if it is there, a directory with all it holds; links are removed,
/// never followed.
pub fn remove(dir: BorrowedFd<'_>, name: &std::ffi::OsStr) -> std::io::Result<()> {
    let st = match fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let fd = openat(Some(dir.as_raw_fd()), name, DIR_FLAGS, Mode::empty())?;
        let mut d = nix::dir::Dir::from_fd(fd)?;
        // SAFETY: `d` owns the descriptor and outlives this borrow of it.
        let inner = unsafe { BorrowedFd::borrow_raw(d.as_raw_fd()) };
        let names: Vec<std::ffi::OsString> = d
            .iter()
            .filter_map(Result::ok)
            .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        for n in names {
            remove(inner, &n)?;
        }
        nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir)?;
    } else {
        nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
