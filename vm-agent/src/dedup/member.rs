//! Hard-link members of a session's tar stream (`send --dedup`).
//!
//! A member of type `Link` named like a chunk file (`<9hex>/x<16hex>`) must
//! carry a PAX `linkpath` that parses as a [`ChunkLoc`] and a PAX
//! `SPARSEBAK.sha256`. The target is either a chunk file of a committed
//! session (any volume) or an earlier member of the session being received.
//! It must be a regular file of at most the chunk-file limit whose SHA-256
//! is the expected one; anything else fails the whole session. On `EMLINK`
//! (too many links to one inode) the bytes are copied instead.

use super::same_inode_at;
use super::{check_hash, committed_fanout, copy_into, describe, file_name, open_chunk};
use crate::dirfd::{self, open_path_dir, optional};
use crate::error::{AgentError, Result};
use crate::open_archive::Archive;
use crate::prune_apply::{settle, Use};
use nix::errno::Errno;
use sparsebak_common::linkref::{parse_sha256, ChunkLoc, PAX_SHA256};
use sparsebak_common::names::{chunk_dir_name, parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::ErrorKind;
use std::collections::HashSet;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Turns link members into hard links inside one session being received.
pub struct Linker<'a> {
    pub a: &'a Archive,
    pub vol: &'a VolName,
    pub session: &'a SessionName,
    pub tmp: &'a Path,
    pub max_chunk: u64,
    settled: HashSet<VolName>,
}

/// What a link member became.
#[derive(Debug, PartialEq, Eq)]
pub enum Linked {
    /// A hard link.
    Link,
    /// A copy of this many bytes (the target had too many links).
    Copy(u64),
}

impl<'a> Linker<'a> {
    pub fn new(
        a: &'a Archive,
        vol: &'a VolName,
        session: &'a SessionName,
        tmp: &'a Path,
        max_chunk: u64,
    ) -> Self {
        let mut settled = HashSet::new();
        settled.insert(vol.clone());
        Linker {
            a,
            vol,
            session,
            tmp,
            max_chunk,
            settled,
        }
    }

    /// Store link member `name` of `entry`.
    pub fn link<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Linked> {
        let addr = parse_chunk_rel_path(name)
            .map_err(|e| AgentError::invalid(format!("link member refused: {e}")))?;
        if entry.size() != 0 {
            return Err(AgentError::invalid(format!(
                "link member {name:?} carries data"
            )));
        }
        let target = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| AgentError::invalid(format!("link member {name:?} has no target")))?;
        let loc = ChunkLoc::parse(&target).map_err(|e| {
            AgentError::invalid(format!("link member {name:?}: target refused: {e}"))
        })?;
        let want = expected_hash(entry, name)?;
        let what = describe(self.a, &loc);
        let dir = self.target_dir(&loc, &what)?;
        let t = open_chunk(dir, &file_name(&loc), self.max_chunk, &what)?.ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!("link target {what} does not exist"),
            )
        })?;
        check_hash(&t, &want, &format!("link target {what}")).map_err(|e| e.with_damaged(&loc))?;
        let dest = self.member_dir(addr)?;
        let fname = sparsebak_common::names::chunk_file_name(addr);
        match dirfd::link(&t.dir, &t.name, &dest, &fname) {
            Ok(()) => {}
            Err(e) if e.errno == Errno::EMLINK => {
                return copy_into(&t.file, &dest, &fname, &want, &what).map(Linked::Copy)
            }
            Err(e) => {
                return Err(AgentError::io(
                    format_args!("cannot link {name} to {what}"),
                    e.into(),
                ))
            }
        }
        let same = same_inode_at(&dest, &fname, &t.stat)
            .map_err(|e| AgentError::io(format_args!("cannot stat {name}"), e))?;
        if !same {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!("link target {what} was replaced while it was being linked"),
            ));
        }
        Ok(Linked::Link)
    }

    /// The directory holding the target: the session being received, or a
    /// committed session (whose volume's unfinished prune is completed first).
    fn target_dir(&mut self, loc: &ChunkLoc, what: &str) -> Result<OwnedFd> {
        let missing = || {
            AgentError::new(
                ErrorKind::NotFound,
                format!("link target {what} does not exist"),
            )
        };
        let io = |e| AgentError::io(format_args!("cannot open link target {what}"), e);
        if &loc.vol == self.vol && &loc.session == self.session {
            let tmp = open_path_dir(self.tmp).map_err(io)?;
            return optional(dirfd::open_dir(&tmp, &chunk_dir_name(loc.addr)))
                .map_err(|e| io(e.dir_refusal()))?
                .ok_or_else(missing);
        }
        if !self.settled.contains(&loc.vol) {
            settle(self.a, &loc.vol, Use::Data)?;
            self.settled.insert(loc.vol.clone());
        }
        committed_fanout(self.a, loc)
            .map_err(io)?
            .ok_or_else(missing)
    }

    /// The member's fan-out directory in the session being received.
    fn member_dir(&self, addr: sparsebak_common::units::ByteOffset) -> Result<OwnedFd> {
        let io = |e| AgentError::io(format_args!("cannot open {}", self.tmp.display()), e);
        let tmp = open_path_dir(self.tmp).map_err(io)?;
        let d = chunk_dir_name(addr);
        dirfd::mkdir(&tmp, &d).map_err(|e| io(e.into()))?;
        optional(dirfd::open_dir(&tmp, &d))
            .map_err(|e| io(e.dir_refusal()))?
            .ok_or_else(|| AgentError::invalid(format!("{d} vanished")))
    }
}

/// The stored hash a link (or keep) member carries in its PAX record.
pub(crate) fn expected_hash<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> Result<[u8; 32]> {
    let none = || AgentError::invalid(format!("link member {name:?} lacks a {PAX_SHA256} record"));
    let exts = entry
        .pax_extensions()
        .map_err(|e| AgentError::io(format_args!("link member {name:?}"), e))?
        .ok_or_else(none)?;
    for ext in exts {
        let ext = ext.map_err(|e| AgentError::io(format_args!("link member {name:?}"), e))?;
        if ext.key() == Ok(PAX_SHA256) {
            return ext.value().ok().and_then(parse_sha256).ok_or_else(|| {
                AgentError::invalid(format!("link member {name:?}: bad {PAX_SHA256}"))
            });
        }
    }
    Err(none())
}
