//! `send --dedup`: for each chunk about to be stored, the chunk file to link
//! to instead, if the archive or this run already holds the same bytes.
//!
//! Lookups go to the on-disk index of the archive as it was when the run
//! started, then to the chunks this run has stored. Those are kept in
//! memory, at most [`RUN_CAP`] of them (a table of at most 50 MiB); past
//! the cap new chunks are still sent, just not deduplicated
//! against each other. A session's chunks become link targets for later
//! volumes only once that session is committed on both sides; a failed
//! session's are forgotten, so nothing ever links into a session that does
//! not exist.

use super::catalog::Catalog;
use super::{key_of, ChunkIndexLookup, Key};
use anyhow::Result;
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::ByteOffset;
use std::collections::{HashMap, HashSet};

/// Most chunks of this run remembered as link targets: 7/8 of 2^21, the
/// most a hash table of 2^21 slots holds before it doubles. A slot is a
/// 16-byte key, two u32 and a control byte (25 bytes), so the table never
/// exceeds 2^21 × 25 bytes = 50 MiB.
pub const RUN_CAP: usize = (1 << 21) / 8 * 7;

/// What `send` asks while it emits a session.
pub trait LinkSource: Send {
    /// `stored` is about to be stored as chunk `addr` of `session` of `vol`:
    /// the chunk file to hard-link instead, or `None` to send the bytes.
    fn link_for(
        &mut self,
        vol: &VolName,
        session: &SessionName,
        stored: &[u8; 32],
        addr: ByteOffset,
    ) -> Result<Option<ChunkLoc>>;
}

/// The decisions of one `send --dedup` run.
pub struct RunDedup {
    index: Box<dyn ChunkIndexLookup>,
    catalog: Catalog,
    /// Sessions this run created (or is creating): (volume, session).
    sessions: Vec<(VolName, SessionName)>,
    /// Key → (index into `sessions`, chunk index), for committed sessions
    /// and the one being sent (`open`).
    seen: HashMap<Key, (u32, u32)>,
    /// The session being sent, whose chunks are forgotten if it fails.
    open: Option<u32>,
    /// Chunks not remembered because the cap was reached.
    pub over_cap: u64,
    /// Files the agent found damaged: never linked to again in this run.
    avoid: HashSet<ChunkLoc>,
    /// Keeps the index's directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl RunDedup {
    pub fn new(
        index: Box<dyn ChunkIndexLookup>,
        catalog: Catalog,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        RunDedup {
            index,
            catalog,
            sessions: Vec::new(),
            seen: HashMap::new(),
            open: None,
            over_cap: 0,
            avoid: HashSet::new(),
            _dir: dir,
        }
    }

    /// The session being sent ended: committed (`ok`) or abandoned.
    pub fn end_session(&mut self, ok: bool) {
        if let Some(sid) = self.open.take() {
            if !ok {
                self.seen.retain(|_, (s, _)| *s != sid);
            }
        }
    }

    /// Never link to `loc` again in this run (the agent found it damaged);
    /// `false` if it was already avoided.
    pub fn avoid(&mut self, loc: ChunkLoc) -> bool {
        self.seen.retain(|_, (s, c)| {
            !self.sessions.get(*s as usize).is_some_and(|(v, ses)| {
                v == &loc.vol
                    && ses == &loc.session
                    && u64::from(*c) * self.catalog.chunk_size.bytes() == loc.addr.0
            })
        });
        self.avoid.insert(loc)
    }

    /// How many files this run avoids.
    pub fn avoided(&self) -> usize {
        self.avoid.len()
    }

    /// Chunks of this run remembered as link targets.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn session_id(&mut self, vol: &VolName, session: &SessionName) -> u32 {
        match self.sessions.last() {
            Some((v, s)) if v == vol && s == session && self.open.is_some() => {
                (self.sessions.len() - 1) as u32
            }
            _ => {
                // A new session starts; one never ended did not commit.
                self.end_session(false);
                self.sessions.push((vol.clone(), session.clone()));
                let sid = (self.sessions.len() - 1) as u32;
                self.open = Some(sid);
                sid
            }
        }
    }
}

impl LinkSource for RunDedup {
    fn link_for(
        &mut self,
        vol: &VolName,
        session: &SessionName,
        stored: &[u8; 32],
        addr: ByteOffset,
    ) -> Result<Option<ChunkLoc>> {
        let sid = self.session_id(vol, session);
        let key = key_of(stored);
        if let Some(l) = self.index.lookup(&key)? {
            if let Some(loc) = self.catalog.loc(l).filter(|l| !self.avoid.contains(l)) {
                return Ok(Some(loc));
            }
        }
        if let Some(&(s, a)) = self.seen.get(&key) {
            let (v, ses) = &self.sessions[s as usize];
            return Ok(Some(ChunkLoc {
                vol: v.clone(),
                session: ses.clone(),
                addr: ByteOffset(u64::from(a) * self.catalog.chunk_size.bytes()),
            }));
        }
        let chunk = self.catalog.index_loc(sid, addr).map(|l| l.chunk);
        if let (true, Some(c)) = (self.remembered() < RUN_CAP, chunk) {
            if self.seen.capacity() == 0 {
                // All at once: growing by doubling would hold the old and
                // the new table together (75 MiB at the last step). Pages
                // are touched only as entries land in them.
                self.seen.reserve(RUN_CAP);
            }
            self.seen.insert(key, (sid, c));
        } else {
            self.over_cap += 1;
        }
        Ok(None)
    }
}
