//! Resuming an interrupted send (docs/FORMAT.md §19).
//!
//! A send whose link broke leaves the chunk files it got as far as in the
//! volume's `S_…-tmp` directory ([`crate::store`] keeps it when the stream
//! ended early). [`check`] (`ResumeCheck`) reports, piece by piece and in
//! address order, the chunk files such a directory holds and the SHA-256 of
//! each as read now. A `PutSession` with `resume_from` then takes that
//! directory over as its own ([`take_over`]) and unpacks with a [`Reuse`]:
//! a *keep* member (a link member whose target is its own name) leaves the
//! file in place after checking its hash again, a data or link member
//! replaces whatever is there, and everything no member named is removed
//! before the manifest is written. So the committed session holds exactly
//! the files an uninterrupted send would have stored, byte for byte.
//!
//! Nothing in the old directory is trusted: names must be chunk names of
//! the chunk size, files are opened without following symlinks and must be
//! regular and within the chunk-file limit, and a file is kept only if its
//! hash is the one dom0 computed from the volume for that chunk.

use crate::dedup::{open_chunk, sha256_of};
use crate::dirfd::{self, optional};
use crate::error::{AgentError, IoContext, Result};
use crate::open_archive::Archive;
use nix::errno::Errno;
use sparsebak_common::linkref::hex32;
use sparsebak_common::names::{
    chunk_dir_name, chunk_file_name, parse_chunk_rel_path, SessionName, VolName,
};
use sparsebak_common::proto::{ErrorKind, RESUME_PIECE, RESUME_RECORD};
use sparsebak_common::units::ByteOffset;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Is `name` a fan-out directory name (9 lowercase hex digits)?
fn is_fanout(name: &str) -> bool {
    name.len() == 9
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Names in directory `d`, which must be a real directory (not a symlink).
fn names_in(d: &Path) -> Result<Vec<String>> {
    let m = fs::symlink_metadata(d).ctx(format_args!("cannot stat {}", d.display()))?;
    if !m.is_dir() {
        return Err(AgentError::invalid(format!(
            "{} is not a directory (or is a symlink)",
            d.display()
        )));
    }
    let mut out = Vec::new();
    for e in fs::read_dir(d).ctx(format_args!("cannot list {}", d.display()))? {
        let e = e.ctx(format_args!("cannot list {}", d.display()))?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The unfinished session's directory, which must exist.
fn unfinished_dir(a: &Archive, vol: &VolName, session: &SessionName) -> Result<PathBuf> {
    let tmp = a.vol_dir(vol).join(session.tmp_dir_name());
    match fs::symlink_metadata(&tmp) {
        Ok(m) if m.is_dir() => Ok(tmp),
        Ok(_) => Err(AgentError::invalid(format!(
            "{} is not a directory (or is a symlink)",
            tmp.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(AgentError::new(
            ErrorKind::NotFound,
            format!("the archive holds no unfinished session {session} of volume {vol}"),
        )),
        Err(e) => Err(AgentError::io(
            format_args!("cannot stat {}", tmp.display()),
            e,
        )),
    }
}

/// Most records per `ResumeHeld` reply ([`RESUME_PIECE`], or the test
/// hook's smaller figure so tests cross several pieces).
pub(crate) fn piece_len() -> usize {
    crate::test_hooks::resume_piece()
        .map(|n| n.clamp(1, RESUME_PIECE))
        .unwrap_or(RESUME_PIECE)
}

/// `ResumeCheck`: the chunk files of unfinished `session` after `after`, in
/// address order, each with the SHA-256 of its bytes: at most one piece of
/// records ([`RESUME_RECORD`] bytes each) and whether more follow.
pub fn check(
    a: &Archive,
    vol: &VolName,
    session: &SessionName,
    after: Option<u64>,
) -> Result<(u64, bool, Vec<u8>)> {
    let cs = a.header()?.chunk_size;
    let max = cs.max_stored();
    let tmp = unfinished_dir(a, vol, session)?;
    let tmpfd = dirfd::open_path_dir(&tmp).ctx(format_args!("cannot open {}", tmp.display()))?;
    let first_dir = after.map(|x| chunk_dir_name(ByteOffset(x)));
    let (limit, mut count, mut out) = (piece_len(), 0u64, Vec::new());
    for d in names_in(&tmp)? {
        if !is_fanout(&d) || first_dir.as_ref().is_some_and(|f| &d < f) {
            continue;
        }
        let Some(dfd) = optional(dirfd::open_dir(&tmpfd, &d)).ok().flatten() else {
            continue; // not a directory: it holds nothing to keep
        };
        let mut addrs: Vec<ByteOffset> = names_in(&tmp.join(&d))?
            .iter()
            .filter_map(|n| parse_chunk_rel_path(&format!("{d}/{n}")).ok())
            .filter(|x| x.0 % cs.bytes() == 0 && after.is_none_or(|f| x.0 > f))
            .collect();
        addrs.sort();
        for addr in addrs {
            if count as usize == limit {
                return Ok((count, true, out));
            }
            let name = chunk_file_name(addr);
            let what = format!("{}/{d}/{name}", tmp.display());
            let fd = dfd.try_clone().ctx(format_args!("cannot open {what}"))?;
            // Anything but a regular file within the limit is not held.
            let Ok(Some(f)) = open_chunk(fd, &name, max, &what) else {
                continue;
            };
            out.extend_from_slice(&addr.0.to_be_bytes());
            out.extend_from_slice(&stored_digest(&f.file, &what)?);
            count += 1;
        }
    }
    debug_assert_eq!(out.len(), count as usize * RESUME_RECORD);
    Ok((count, false, out))
}

/// `PutSession` with `resume_from`: rename the unfinished session's
/// directory to `tmp` (the new session's). `false` if there is none to take
/// over (the new session then starts empty).
pub fn take_over(a: &Archive, vol: &VolName, from: &SessionName, tmp: &Path) -> Result<bool> {
    let old = match unfinished_dir(a, vol, from) {
        Ok(p) => p,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if old != tmp {
        fs::rename(&old, tmp).ctx(format_args!(
            "cannot take over {} as {}",
            old.display(),
            tmp.display()
        ))?;
    }
    Ok(true)
}

/// Remove entry `name` of `dir` whatever it is (a file, a symlink, a
/// directory tree); `path` is the same entry by path, for messages and for
/// a directory tree.
fn remove_entry(dir: &OwnedFd, name: &str, path: &Path) -> Result<()> {
    match dirfd::unlink(dir, name) {
        Ok(()) => Ok(()),
        Err(e) if e.errno == Errno::ENOENT => Ok(()),
        Err(e) if e.errno == Errno::EISDIR || e.errno == Errno::EPERM => {
            fs::remove_dir_all(path).ctx(format_args!("cannot remove {}", path.display()))
        }
        Err(e) => Err(AgentError::io(
            format_args!("cannot remove {}", path.display()),
            e.into(),
        )),
    }
}

/// The stream of a resumed session, as it is unpacked over the files an
/// earlier attempt left: which fan-out directories and chunk files the
/// stream has named so far, so that whatever it skipped is removed.
pub struct Reuse {
    tmp: PathBuf,
    tmpfd: OwnedFd,
    max_chunk: u64,
    /// The fan-out directory of the latest member and the files named in it.
    cur: Option<(String, HashSet<String>)>,
    visited: HashSet<String>,
    /// Chunk files kept in place.
    pub kept: u64,
}

impl Reuse {
    pub fn new(tmp: &Path, max_chunk: u64) -> Result<Reuse> {
        let tmpfd = dirfd::open_path_dir(tmp).ctx(format_args!("cannot open {}", tmp.display()))?;
        Ok(Reuse {
            tmp: tmp.to_path_buf(),
            tmpfd,
            max_chunk,
            cur: None,
            visited: HashSet::new(),
            kept: 0,
        })
    }

    /// A chunk member at `addr` comes next (addresses ascend): finish the
    /// fan-out directory the stream left, and remove what is at `addr`
    /// unless the member keeps it.
    pub fn next_member(&mut self, addr: ByteOffset, keep: bool) -> Result<()> {
        let d = chunk_dir_name(addr);
        if self.cur.as_ref().is_none_or(|(c, _)| c != &d) {
            self.sweep_current()?;
            if self.fanout(&d).is_err() {
                // Not a directory (or a symlink): writes must not go through it.
                remove_entry(&self.tmpfd, &d, &self.tmp.join(&d))?;
            }
            self.visited.insert(d.clone());
            self.cur = Some((d.clone(), HashSet::new()));
        }
        let name = chunk_file_name(addr);
        if !keep {
            if let Some(dfd) = self.fanout(&d)? {
                remove_entry(&dfd, &name, &self.tmp.join(&d).join(&name))?;
            }
        }
        self.cur.as_mut().expect("set above").1.insert(name);
        Ok(())
    }

    /// A keep member: the file at `addr` stays if its SHA-256 is `want`.
    pub fn keep(&mut self, addr: ByteOffset, want: &[u8; 32]) -> Result<()> {
        let (d, name) = (chunk_dir_name(addr), chunk_file_name(addr));
        let what = format!(
            "chunk {d}/{name} kept from the unfinished session in {}",
            self.tmp.display()
        );
        let missing = || AgentError::new(ErrorKind::NotFound, format!("{what} does not exist"));
        let dfd = self.fanout(&d)?.ok_or_else(missing)?;
        let f = open_chunk(dfd, &name, self.max_chunk, &what)?.ok_or_else(missing)?;
        let got = stored_digest(&f.file, &what)?;
        if &got != want {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "{what} is damaged: its stored digest is {}, expected {}",
                    hex32(&got),
                    hex32(want)
                ),
            ));
        }
        self.kept += 1;
        Ok(())
    }

    /// The last chunk member went by: remove every file and directory of
    /// the earlier attempt that no member named (an old manifest too).
    pub fn finish(&mut self) -> Result<()> {
        self.sweep_current()?;
        for n in names_in(&self.tmp)? {
            if !self.visited.contains(&n) {
                remove_entry(&self.tmpfd, &n, &self.tmp.join(&n))?;
            }
        }
        Ok(())
    }

    /// Fan-out directory `d` of the session, if it exists (never a symlink).
    fn fanout(&self, d: &str) -> Result<Option<OwnedFd>> {
        optional(dirfd::open_dir(&self.tmpfd, d)).map_err(|e| {
            AgentError::io(
                format_args!("cannot open {}", self.tmp.join(d).display()),
                e.dir_refusal(),
            )
        })
    }

    /// Remove the entries of the current fan-out directory the stream did
    /// not name, and the directory itself if that leaves it empty.
    fn sweep_current(&mut self) -> Result<()> {
        let Some((d, named)) = self.cur.take() else {
            return Ok(());
        };
        let Some(dfd) = self.fanout(&d)? else {
            return Ok(());
        };
        let dpath = self.tmp.join(&d);
        for n in names_in(&dpath)? {
            if !named.contains(&n) {
                remove_entry(&dfd, &n, &dpath.join(&n))?;
            }
        }
        Ok(())
    }
}

/// Chunk file header: magic, then the chunk format version (FORMAT.md §5, §18.4).
const CHUNK_MAGIC: &[u8; 3] = b"SBC";
const VERSION_SEALED: u8 = 2;
const HEADER_LEN: usize = 12;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The manifest's *stored* digest of a chunk file, as dom0 computes it
/// (dom0/src/chunk.rs `stored_digest`): for a sealed file (format 2) the
/// first 16 bytes of its nonce and its 16-byte tag, which identify this
/// very file; a sealed-looking file too short to hold them gets a digest no
/// sealed file has; anything else its SHA-256.
pub(crate) fn stored_digest(f: &std::fs::File, what: &str) -> Result<[u8; 32]> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata().ctx(format_args!("cannot stat {what}"))?.len();
    let mut head = [0u8; HEADER_LEN + 16];
    let n = f
        .read_at(&mut head, 0)
        .ctx(format_args!("cannot read {what}"))?;
    let sealed = n >= 4 && &head[..3] == CHUNK_MAGIC && head[3] == VERSION_SEALED;
    if !sealed || len < (HEADER_LEN + NONCE_LEN + TAG_LEN) as u64 || n < head.len() {
        let mut d = sha256_of(f, what)?;
        if sealed {
            d[0] ^= 0xff;
        }
        return Ok(d);
    }
    let mut d = [0u8; 32];
    d[..16].copy_from_slice(&head[HEADER_LEN..HEADER_LEN + 16]);
    f.read_exact_at(&mut d[16..], len - TAG_LEN as u64)
        .ctx(format_args!("cannot read {what}"))?;
    Ok(d)
}

/// [`stored_digest`] of a chunk file's bytes in memory (an object store's
/// held chunk, crate::s3store::resume).
pub(crate) fn stored_digest_of(b: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let sealed = b.len() >= 4 && &b[..3] == CHUNK_MAGIC && b[3] == VERSION_SEALED;
    if !sealed || b.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
        let mut d: [u8; 32] = Sha256::digest(b).into();
        if sealed {
            d[0] ^= 0xff;
        }
        return d;
    }
    let mut d = [0u8; 32];
    d[..16].copy_from_slice(&b[HEADER_LEN..HEADER_LEN + 16]);
    d[16..].copy_from_slice(&b[b.len() - TAG_LEN..]);
    d
}
