//! Resuming an interrupted send in an object-store archive (docs/FORMAT.md
//! §21.10). A send whose stream broke off (the link, dom0 or its agent's
//! peer died) uploads the pack it was filling and writes `S_…/held`: the
//! index of every chunk file it uploaded. `ResumeCheck` reports those, in
//! address order, each with its stored digest computed from the bytes read
//! back now (as the file-system backend reads its `-tmp` files). A
//! `PutSession` with `resume_from` then takes a *keep* member as a
//! reference to the held chunk file, after reading it back and checking
//! its digest against the one dom0 expects; nothing is uploaded again.
//! Held indexes count as references for garbage collection until the
//! session that resumed them commits.

use super::get::chunk_bytes;
use super::layout::{Index, Loc};
use super::S3Archive;
use crate::error::{AgentError, Result};
use crate::resume::{piece_len, stored_digest_of};
use sparsebak_common::linkref::hex32;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{ErrorKind, RESUME_RECORD};

/// Largest held index read (24 bytes a chunk file: 40 M chunk files).
const MAX_HELD: u64 = super::layout::MAX_INDEX;

pub fn held_key(a: &S3Archive, vol: &VolName, s: &SessionName) -> String {
    format!("{}{s}/held", a.keys().vol_dir(vol))
}

/// The held index of unfinished session `s`, if there is one.
pub fn load(a: &S3Archive, vol: &VolName, s: &SessionName) -> Result<Option<Index>> {
    let key = held_key(a, vol, s);
    let Some(b) = a.client().get(&key, MAX_HELD).map_err(|e| a.err(e))? else {
        return Ok(None);
    };
    let max = a.header()?.chunk_size.max_stored();
    Index::decode(&b, max)
        .map(Some)
        .map_err(|e| AgentError::invalid(format!("{key}: {e}")))
}

/// `ResumeCheck`: one piece of `(address, stored digest)` records of the
/// chunk files unfinished session `s` holds after `after`.
pub fn check(
    a: &S3Archive,
    vol: &VolName,
    s: &SessionName,
    after: Option<u64>,
) -> Result<(u64, bool, Vec<u8>)> {
    let Some(ix) = load(a, vol, s)? else {
        return Ok((0, false, Vec::new()));
    };
    let start = ix
        .locs
        .partition_point(|l| after.is_some_and(|x| l.addr <= x));
    let limit = piece_len();
    let (mut out, mut count, mut win) = (Vec::new(), 0u64, None);
    for i in start..ix.locs.len() {
        if count as usize == limit {
            return Ok((count, true, out));
        }
        let b = chunk_bytes(a, &ix, i, &mut win).map_err(|m| {
            AgentError::new(
                ErrorKind::Io,
                format!(
                    "held chunk file {:#x} of {s} of {vol}: {m}",
                    ix.locs[i].addr
                ),
            )
        })?;
        out.extend_from_slice(&ix.locs[i].addr.to_be_bytes());
        out.extend_from_slice(&stored_digest_of(b));
        count += 1;
    }
    debug_assert_eq!(out.len(), count as usize * RESUME_RECORD);
    Ok((count, false, out))
}

/// The held chunk files a resumed send may keep.
pub struct Held {
    pub from: SessionName,
    ix: Index,
    win: Option<(u32, u64, Vec<u8>)>,
}

impl Held {
    pub fn new(from: SessionName, ix: Index) -> Held {
        Held {
            from,
            ix,
            win: None,
        }
    }

    /// A keep member at `addr`: the held chunk file there, read back and
    /// checked against `want`; its pack id and place.
    pub fn keep(&mut self, a: &S3Archive, addr: u64, want: &[u8; 32]) -> Result<(String, Loc)> {
        let i = self.ix.find(addr).ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!(
                    "keep member {addr:#x}: the unfinished session {} holds no chunk file there",
                    self.from
                ),
            )
        })?;
        let b = chunk_bytes(a, &self.ix, i, &mut self.win).map_err(|m| {
            AgentError::new(
                ErrorKind::Io,
                format!("held chunk file {addr:#x} of {}: {m}", self.from),
            )
        })?;
        let have = stored_digest_of(b);
        if have != *want {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "held chunk file {addr:#x} of {} has digest {}, not the expected {}",
                    self.from,
                    hex32(&have),
                    hex32(want)
                ),
            ));
        }
        let l = self.ix.locs[i];
        Ok((self.ix.packs[l.pack as usize].clone(), l))
    }
}
