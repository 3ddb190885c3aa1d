//! `send --dedup` into an object-store archive: a link member becomes a
//! reference to the chunk file it names (docs/FORMAT.md §21.5, §12): the
//! new session's index points into the pack that already holds it, after
//! the agent reads those bytes back and checks their SHA-256 against the
//! member's `SPARSEBAK.sha256`, as the file-system backend checks a hard
//! link's target. The target is a chunk file of a committed session (any
//! volume; its newest generation) or an earlier member of this session
//! (from the pack being filled, or from an uploaded one once the uploader
//! has confirmed it).

use super::get::{self, chunk_bytes};
use super::layout::{Index, Loc};
use super::{delete, prune, S3Archive};
use crate::error::{AgentError, Result};
use sha2::{Digest, Sha256};
use sparsebak_common::linkref::{hex32, ChunkLoc};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::ErrorKind;
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::Receiver;

/// What the link members of one session need.
pub struct Links {
    /// Keys of packs the uploader has stored.
    acks: Receiver<String>,
    done: HashSet<String>,
    /// Ids of the packs this session made.
    pub mine: HashSet<String>,
    /// Committed sessions' newest indexes, by volume and session, each with
    /// its last coalesced read (targets come in address order).
    cache: HashMap<(VolName, SessionName), (Index, Window)>,
    settled: HashSet<VolName>,
}

type Window = Option<(u32, u64, Vec<u8>)>;

/// Where a link target is: its pack id and place, and its bytes' SHA-256.
pub type Target = (String, Loc, [u8; 32]);

impl Links {
    pub fn new(acks: Receiver<String>) -> Links {
        Links {
            acks,
            done: HashSet::new(),
            mine: HashSet::new(),
            cache: HashMap::new(),
            settled: HashSet::new(),
        }
    }

    /// Wait until the uploader has stored pack `key`.
    fn uploaded(&mut self, key: &str) -> Result<()> {
        while !self.done.contains(key) {
            let k = self
                .acks
                .recv()
                .map_err(|_| AgentError::new(ErrorKind::Io, "the pack upload failed"))?;
            self.done.insert(k);
        }
        Ok(())
    }

    /// A chunk of this session: in `index` (the session so far), whose pack
    /// `cur` is still being filled in `buf`.
    pub fn own(
        &mut self,
        a: &S3Archive,
        index: &Index,
        cur: Option<u32>,
        buf: &[u8],
        loc: &ChunkLoc,
    ) -> Result<Target> {
        let i = index.find(loc.addr.0).ok_or_else(|| missing(loc))?;
        let l = index.locs[i];
        let id = index.packs[l.pack as usize].clone();
        let sha: [u8; 32] = if Some(l.pack) == cur {
            Sha256::digest(&buf[l.offset as usize..(l.offset + u64::from(l.len)) as usize]).into()
        } else {
            if self.mine.contains(&id) {
                self.uploaded(&a.keys().pack(&id))?;
            }
            let mut win = None;
            let b = chunk_bytes(a, index, i, &mut win).map_err(|m| read_err(loc, m))?;
            Sha256::digest(b).into()
        };
        Ok((id, l, sha))
    }

    /// A chunk of a committed session (its volume's interrupted delete or
    /// prune finished first).
    pub fn committed(&mut self, a: &S3Archive, loc: &ChunkLoc) -> Result<Target> {
        if self.settled.insert(loc.vol.clone()) {
            delete::settle(a, &loc.vol)?;
            prune::settle(a, &loc.vol)?;
        }
        let key = (loc.vol.clone(), loc.session.clone());
        if !self.cache.contains_key(&key) {
            let gen = *get::sessions(a, &loc.vol)?
                .get(&loc.session)
                .ok_or_else(|| missing(loc))?;
            let c = get::read_commit(a, &loc.vol, &loc.session, gen)?;
            let b = get::load(a, &loc.vol, &c, "index", &c.index)?;
            let ix = Index::decode(&b, a.header()?.chunk_size.max_stored()).map_err(|e| {
                AgentError::invalid(format!("index of {} of {}: {e}", loc.session, loc.vol))
            })?;
            self.cache.insert(key.clone(), (ix, None));
        }
        let (ix, win) = self.cache.get_mut(&key).expect("inserted above");
        let i = ix.find(loc.addr.0).ok_or_else(|| missing(loc))?;
        let b = chunk_bytes(a, ix, i, win).map_err(|m| read_err(loc, m))?;
        let l = ix.locs[i];
        Ok((
            ix.packs[l.pack as usize].clone(),
            l,
            Sha256::digest(b).into(),
        ))
    }
}

/// The target's bytes must have the SHA-256 the member carries.
pub fn check(loc: &ChunkLoc, got: &[u8; 32], want: &[u8; 32]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(AgentError::new(
        ErrorKind::Mismatch,
        format!(
            "link target {} is damaged: its sha256 is {}, expected {}",
            loc.to_path(),
            hex32(got),
            hex32(want)
        ),
    )
    .with_damaged(loc))
}

fn missing(loc: &ChunkLoc) -> AgentError {
    AgentError::new(
        ErrorKind::NotFound,
        format!("link target {} does not exist", loc.to_path()),
    )
}

fn read_err(loc: &ChunkLoc, m: String) -> AgentError {
    AgentError::new(
        ErrorKind::Io,
        format!("cannot read link target {}: {m}", loc.to_path()),
    )
}
