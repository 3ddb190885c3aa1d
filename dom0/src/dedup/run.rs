//! `send --dedup`: for each chunk about to be stored, the chunk file to link
//! to instead, if the archive or this run already holds the same bytes.
//!
//! Lookups go to the on-disk index of the archive as it was when the run
//! started, then to the chunks this run has stored. Those are kept in
//! memory, at most [`RUN_CAP`] of them (about 60 bytes each, so at most
//! ~120 MiB); past the cap new chunks are still sent, just not deduplicated
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
use std::collections::HashMap;

/// Most chunks of this run remembered as link targets.
pub const RUN_CAP: usize = 2 << 20;

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
    committed: HashMap<Key, (u32, u64)>,
    current: HashMap<Key, (u32, u64)>,
    /// Chunks not remembered because the cap was reached.
    pub over_cap: u64,
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
            committed: HashMap::new(),
            current: HashMap::new(),
            over_cap: 0,
            _dir: dir,
        }
    }

    /// The session being sent ended: committed (`ok`) or abandoned.
    pub fn end_session(&mut self, ok: bool) {
        let cur = std::mem::take(&mut self.current);
        if ok {
            self.committed.extend(cur);
        }
    }

    /// Chunks of this run remembered as link targets.
    pub fn remembered(&self) -> usize {
        self.committed.len() + self.current.len()
    }

    fn session_id(&mut self, vol: &VolName, session: &SessionName) -> u32 {
        match self.sessions.last() {
            Some((v, s)) if v == vol && s == session => (self.sessions.len() - 1) as u32,
            _ => {
                // A new session starts: whatever the last one left is void
                // unless end_session(true) kept it.
                self.current.clear();
                self.sessions.push((vol.clone(), session.clone()));
                (self.sessions.len() - 1) as u32
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
            if let Some(loc) = self.catalog.loc(l) {
                return Ok(Some(loc));
            }
        }
        if let Some(&(s, a)) = self.current.get(&key).or_else(|| self.committed.get(&key)) {
            let (v, ses) = &self.sessions[s as usize];
            return Ok(Some(ChunkLoc {
                vol: v.clone(),
                session: ses.clone(),
                addr: ByteOffset(a),
            }));
        }
        if self.remembered() < RUN_CAP {
            self.current.insert(key, (sid, addr.0));
        } else {
            self.over_cap += 1;
        }
        Ok(None)
    }
}
