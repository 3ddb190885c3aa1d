//! The agent's directory-fd core: every file operation below the archive
//! dir that must not be redirected by a symlink goes through here.
//!
//! Whoever else can write the backup disk may plant symlinks, FIFOs or
//! devices in it. So each operation is relative to an open directory
//! (`*at` system calls on an [`OwnedFd`]), never follows a symlink in the
//! name it is given (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`; `O_DIRECTORY`
//! where a directory is meant), opens files non-blocking and without a
//! controlling terminal (a planted FIFO cannot hang the agent), and is
//! close-on-exec. A path of several components is walked one component at
//! a time ([`open_dir_chain`], [`open_regular`]).
//!
//! Errors are an [`AtError`]: the errno and the name it concerns. Callers
//! put the agent's own message around it (what was being done, to which
//! volume and session); `io::Error::from(AtError)` is the bare errno, so
//! those messages read as they always have.

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A failed directory-relative operation: the errno and the name (relative
/// to its directory) it was about.
#[derive(Debug)]
pub struct AtError {
    pub errno: Errno,
    pub name: String,
}

impl AtError {
    fn new(name: &str) -> impl FnOnce(Errno) -> AtError + '_ {
        move |errno| AtError {
            errno,
            name: name.to_string(),
        }
    }

    /// The refusal of a component that is a symlink, or not a directory
    /// where one was meant (`directory`); other errors stay the errno.
    pub fn refusal(self, directory: bool) -> io::Error {
        match self.errno {
            Errno::ELOOP => io::Error::other(format!("{} is a symlink", self.name)),
            Errno::ENOTDIR if directory => io::Error::other(format!(
                "{} is not a directory (or a symlink to one)",
                self.name
            )),
            e => e.into(),
        }
    }

    /// The refusal of a directory component that is a symlink or not a
    /// directory, without telling which (the wording of chunk locations,
    /// `crate::dedup`); other errors stay the errno.
    pub fn dir_refusal(self) -> io::Error {
        match self.errno {
            Errno::ELOOP | Errno::ENOTDIR => io::Error::other(format!(
                "{} is not a directory (or is a symlink)",
                self.name
            )),
            e => e.into(),
        }
    }
}

impl fmt::Display for AtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.errno.desc())
    }
}

impl std::error::Error for AtError {}

impl From<AtError> for io::Error {
    fn from(e: AtError) -> io::Error {
        e.errno.into()
    }
}

pub type AtResult<T> = std::result::Result<T, AtError>;

/// `Ok(None)` for a name that does not exist.
pub fn optional<T>(r: AtResult<T>) -> AtResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.errno == Errno::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

const NOFOLLOW: OFlag = OFlag::O_NOFOLLOW.union(OFlag::O_CLOEXEC);
const DIR: OFlag = OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(NOFOLLOW);
const READ: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY)
    .union(NOFOLLOW);
/// Mode of directories the agent creates.
const DIR_MODE: u32 = 0o755;

/// Open directory `name` under `dir`.
pub fn open_dir(dir: &OwnedFd, name: &str) -> AtResult<OwnedFd> {
    openat(dir, name, DIR, Mode::empty()).map_err(AtError::new(name))
}

/// Open file `name` under `dir` for reading (any type: check it is regular).
pub fn open_file(dir: &OwnedFd, name: &str) -> AtResult<OwnedFd> {
    openat(dir, name, READ, Mode::empty()).map_err(AtError::new(name))
}

/// Create file `name` under `dir` for writing; it must not exist yet.
pub fn create_file(dir: &OwnedFd, name: &str, mode: u32) -> AtResult<File> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | NOFOLLOW;
    openat(dir, name, flags, Mode::from_bits_truncate(mode))
        .map(File::from)
        .map_err(AtError::new(name))
}

/// Create directory `name` under `dir`; an existing entry of that name is
/// left as it is (opening it with [`open_dir`] checks what it is).
pub fn mkdir(dir: &OwnedFd, name: &str) -> AtResult<()> {
    match mkdirat(dir, name, Mode::from_bits_truncate(DIR_MODE)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(AtError::new(name)(e)),
    }
}

/// Create directory `name` under `dir` if missing, and open it.
pub fn make_dir(dir: &OwnedFd, name: &str) -> AtResult<OwnedFd> {
    mkdir(dir, name)?;
    open_dir(dir, name)
}

/// Rename `from` in `from_dir` to `to` in `to_dir` (never follows either).
pub fn rename(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> AtResult<()> {
    renameat(from_dir, from, to_dir, to).map_err(AtError::new(from))
}

/// Hard-link `from` in `from_dir` as `to` in `to_dir`, not following a
/// symlink `from`.
pub fn link(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> AtResult<()> {
    linkat(from_dir, from, to_dir, to, AtFlags::empty()).map_err(AtError::new(from))
}

/// Remove file (or symlink) `name` from `dir`.
pub fn unlink(dir: &OwnedFd, name: &str) -> AtResult<()> {
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(AtError::new(name))
}

/// Stat `name` in `dir` itself (a symlink is reported as one).
pub fn stat(dir: &OwnedFd, name: &str) -> AtResult<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(AtError::new(name))
}

/// The file type bits of a stat say regular file.
pub fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// Does `name` exist in `dir` (as anything)? `false` without a `dir`.
pub fn exists(dir: Option<&OwnedFd>, name: &str) -> AtResult<bool> {
    match dir {
        None => Ok(false),
        Some(d) => optional(stat(d, name)).map(|s| s.is_some()),
    }
}

/// [`open_dir`]; `Ok(None)` if absent, a symlink or non-directory refused
/// ([`AtError::refusal`]).
pub fn find_dir(dir: &OwnedFd, name: &str) -> io::Result<Option<OwnedFd>> {
    optional(open_dir(dir, name)).map_err(|e| e.refusal(true))
}

/// [`open_file`]; `Ok(None)` if absent, a symlink refused
/// ([`AtError::refusal`]).
pub fn find_file(dir: &OwnedFd, name: &str) -> io::Result<Option<OwnedFd>> {
    optional(open_file(dir, name)).map_err(|e| e.refusal(false))
}

/// Open directory `p` by path, refusing a symlink as its last component.
pub fn open_path_dir(p: &Path) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(p, DIR, Mode::empty())?)
}

/// Open `p` by path with `opts`, refusing a symlink as its last component
/// (for files named from the archive dir, like the lock file and a prune
/// plan, whose parents were checked or created by the agent).
pub fn open_path_file(opts: &mut OpenOptions, p: &Path) -> io::Result<File> {
    opts.custom_flags(nix::libc::O_NOFOLLOW).open(p)
}

/// Open the archive dir `p` by path as `Open` checked it (it may be a
/// symlink within the mount); it must be a directory.
pub fn open_archive_dir(p: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    Ok(nix::fcntl::open(p, flags, Mode::empty())?)
}

/// Open the archive dir `base` by path as `Open` checked it (it may be a
/// symlink within the mount, as for every request); `Ok(None)` if missing.
pub fn open_base(base: &Path) -> io::Result<Option<OwnedFd>> {
    match File::open(base) {
        Ok(d) => Ok(Some(d.into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open the directory `base/comps…`, refusing a symlink at every component
/// below `base` (errors as [`AtError::refusal`]). `Ok(None)` if some
/// component is missing.
pub fn open_dir_chain(base: &Path, comps: &[&str]) -> io::Result<Option<OwnedFd>> {
    let Some(mut fd) = open_base(base)? else {
        return Ok(None);
    };
    for c in comps {
        fd = match find_dir(&fd, c)? {
            Some(f) => f,
            None => return Ok(None),
        };
    }
    Ok(Some(fd))
}

/// Open `rel` (`/`-separated, built from checked names only) under `base`
/// one component at a time, refusing a symlink at every component (not
/// only the last); the last must be a regular file. `Ok(None)` if some
/// component does not exist.
pub fn open_regular(base: &Path, rel: &str) -> io::Result<Option<File>> {
    let Some(mut fd) = open_base(base)? else {
        return Ok(None);
    };
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        let next = if parts.peek().is_some() {
            open_dir(&fd, part)
        } else {
            open_file(&fd, part)
        };
        fd = match optional(next)? {
            Some(f) => f,
            None => return Ok(None),
        };
    }
    let f = File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir(p: &Path) -> OwnedFd {
        open_path_dir(p).unwrap()
    }

    #[test]
    fn symlinks_are_never_followed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"x").unwrap();
        symlink("d", t.path().join("ld")).unwrap();
        symlink("d/f", t.path().join("lf")).unwrap();
        let root = dir(t.path());
        assert!(open_dir(&root, "d").is_ok());
        let e = open_dir(&root, "ld").unwrap_err();
        assert!(matches!(e.errno, Errno::ELOOP | Errno::ENOTDIR), "{e}");
        assert_eq!(open_file(&root, "lf").unwrap_err().errno, Errno::ELOOP);
        assert!(!is_regular(&stat(&root, "lf").unwrap()));
        assert!(open_regular(t.path(), "ld/f").is_err());
        assert!(open_regular(t.path(), "d/f").unwrap().is_some());
        assert!(open_regular(t.path(), "d/g").unwrap().is_none());
        assert!(open_regular(t.path(), "d").is_err());
        assert!(open_dir_chain(t.path(), &["ld"]).is_err());
        assert!(open_dir_chain(t.path(), &["d"]).unwrap().is_some());
        assert!(open_dir_chain(t.path(), &["e"]).unwrap().is_none());
    }

    #[test]
    fn create_link_rename_unlink() {
        let t = tempfile::tempdir().unwrap();
        let root = dir(t.path());
        let sub = make_dir(&root, "s").unwrap();
        make_dir(&root, "s").unwrap();
        create_file(&sub, "a", 0o644).unwrap();
        assert_eq!(
            create_file(&sub, "a", 0o644).unwrap_err().errno,
            Errno::EEXIST
        );
        link(&sub, "a", &root, "b").unwrap();
        rename(&root, "b", &sub, "c").unwrap();
        assert!(exists(Some(&sub), "c").unwrap());
        unlink(&sub, "c").unwrap();
        assert!(!exists(Some(&sub), "c").unwrap());
        assert!(!exists(None, "a").unwrap());
        let e = optional(stat(&root, "zz")).unwrap();
        assert!(e.is_none());
        assert_eq!(
            stat(&root, "zz").unwrap_err().to_string(),
            "zz: No such file or directory"
        );
    }
}
