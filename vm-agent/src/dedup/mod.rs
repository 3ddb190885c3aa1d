//! Deduplication on the archive side (docs/FORMAT.md §12).
//!
//! * [`check_hardlinks`]: does the destination file system support hard
//!   links at all? Asked before anything is sent with `--dedup`.
//! * [`member::Linker`]: a hard-link member of a session's tar stream becomes
//!   a hard link to a chunk file already in the archive.
//! * [`ops::dedup`]: replace duplicate chunk files by hard links
//!   (`arch-deduplicate`).
//!
//! Every path is built from a parsed [`ChunkLoc`] (so it names a committed
//! `S_…` session of a valid volume, never `-tmp`, `-orphan`, `-pruned` or a
//! prune plan), opened one component at a time with `O_NOFOLLOW`, and a link
//! target must be a regular file whose SHA-256 is the one dom0 expects. The
//! inode linked is checked to be the inode hashed, so a file swapped in
//! between is caught.

pub mod member;
pub mod ops;

use crate::dirfd::{self, optional, AtError};
use crate::error::{AgentError, IoContext, Result};
use crate::open_archive::Archive;
use nix::errno::Errno;
use nix::sys::stat::{fstat, FileStat};
use sha2::{Digest, Sha256};
use sparsebak_common::linkref::{hex32, ChunkLoc, VOLUMES};
use sparsebak_common::names::{chunk_dir_name, chunk_file_name};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::HEADER_FILE;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

/// Temporary name `CheckHardlinks` links `archive.json` to.
pub const CHECK_NAME: &str = ".hardlink-check";

/// Link `archive.json` to a temporary name and remove it again.
pub fn check_hardlinks(a: &Archive) -> Result<()> {
    a.require_write()?;
    let src = a.dir.join(HEADER_FILE);
    let tmp = a.dir.join(CHECK_NAME);
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = std::fs::hard_link(&src, &tmp) {
        return Err(AgentError::new(
            ErrorKind::Invalid,
            format!(
                "destination {} does not support hard links (needed by --dedup): {e}",
                a.dir.display()
            ),
        ));
    }
    std::fs::remove_file(&tmp).ctx(format_args!("cannot remove {}", tmp.display()))
}

/// The fan-out directory of a committed chunk location, opened component by
/// component from the archive dir. `Ok(None)` if some component is missing.
pub(crate) fn committed_fanout(a: &Archive, loc: &ChunkLoc) -> io::Result<Option<OwnedFd>> {
    // The archive dir itself is opened as `Open` checked it (it may be a
    // symlink within the mount, as for every other request); everything
    // below it, never through a symlink.
    let mut fd = dirfd::open_archive_dir(&a.dir)?;
    for part in [
        VOLUMES,
        loc.vol.as_str(),
        loc.session.as_str(),
        &chunk_dir_name(loc.addr),
    ] {
        fd = match optional(dirfd::open_dir(&fd, part)).map_err(AtError::dir_refusal)? {
            Some(d) => d,
            None => return Ok(None),
        };
    }
    Ok(Some(fd))
}

/// A chunk file opened for reading: its directory, name, descriptor and stat.
pub(crate) struct Opened {
    pub dir: OwnedFd,
    pub name: String,
    pub file: File,
    pub stat: FileStat,
}

/// Open chunk file `name` in `dir`: never through a symlink, never a FIFO
/// or device, at most `max` bytes. `Ok(None)` if it does not exist.
pub(crate) fn open_chunk(dir: OwnedFd, name: &str, max: u64, what: &str) -> Result<Option<Opened>> {
    let fd = match dirfd::open_file(&dir, name) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::ENOENT => return Ok(None),
        Err(e) if e.errno == Errno::ELOOP => {
            return Err(AgentError::invalid(format!(
                "{what} is a symlink; refusing it"
            )))
        }
        Err(e) => return Err(AgentError::io(format_args!("cannot open {what}"), e.into())),
    };
    let stat =
        fstat(&fd).map_err(|e| AgentError::io(format_args!("cannot stat {what}"), e.into()))?;
    if !dirfd::is_regular(&stat) {
        return Err(AgentError::invalid(format!(
            "{what} is not a regular file; refusing it"
        )));
    }
    if stat.st_size as u64 > max {
        return Err(AgentError::invalid(format!(
            "{what} is {} bytes, larger than any chunk file",
            stat.st_size
        )));
    }
    Ok(Some(Opened {
        dir,
        name: name.to_string(),
        file: File::from(fd),
        stat,
    }))
}

/// SHA-256 of an open file, read from its start.
pub(crate) fn sha256_of(f: &File, what: &str) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut off = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, off)
            .ctx(format_args!("cannot read {what}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finalize().into())
}

/// Check an opened target's hash against `want`.
pub(crate) fn check_hash(o: &Opened, want: &[u8; 32], what: &str) -> Result<()> {
    let got = sha256_of(&o.file, what)?;
    if &got != want {
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!(
                "{what} is damaged: its sha256 is {}, expected {}",
                hex32(&got),
                hex32(want)
            ),
        ));
    }
    Ok(())
}

/// Does `name` in `dir` now name the inode of `o`?
pub(crate) fn same_inode_at(dir: &OwnedFd, name: &str, o: &FileStat) -> io::Result<bool> {
    let s = dirfd::stat(dir, name)?;
    Ok(s.st_dev == o.st_dev && s.st_ino == o.st_ino)
}

/// Copy all of `src` into a new file `name` in `dir` (the fallback when the
/// target has too many links), checking the copy's hash as it goes.
pub(crate) fn copy_into(
    src: &File,
    dir: &OwnedFd,
    name: &str,
    want: &[u8; 32],
    what: &str,
) -> Result<u64> {
    let mut out = dirfd::create_file(dir, name, 0o644)
        .map_err(|e| AgentError::io(format_args!("cannot create a copy of {what}"), e.into()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    let mut off = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(src, &mut buf, off)
            .ctx(format_args!("cannot read {what}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n])
            .ctx(format_args!("cannot write a copy of {what}"))?;
        off += n as u64;
        total += n as u64;
    }
    let got: [u8; 32] = h.finalize().into();
    if &got != want {
        let _ = dirfd::unlink(dir, name);
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!("{what} changed while it was copied"),
        ));
    }
    Ok(total)
}

/// Human name of a location for messages.
pub(crate) fn describe(a: &Archive, loc: &ChunkLoc) -> String {
    a.dir.join(loc.to_path()).display().to_string()
}

pub(crate) fn file_name(loc: &ChunkLoc) -> String {
    chunk_file_name(loc.addr)
}
