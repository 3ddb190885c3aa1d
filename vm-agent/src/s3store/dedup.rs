//! `arch-deduplicate` in an object-store archive: each duplicate chunk file
//! becomes a reference to the kept copy (docs/FORMAT.md §21.5). For every
//! operation (keep, dup, sha256) of the stream, both must be chunk files of
//! committed sessions; if dup already points at keep's bytes nothing
//! happens; keep's bytes are read back and must hash to sha256, otherwise
//! the duplicate is left alone and the damage reported. Every session with
//! a duplicate replaced then gets its next generation (index changed,
//! manifest and info copied) through the prune path's marker and commit
//! (crate::s3store::prune: a crash leaves either generation whole), and
//! the packs no longer referenced are collected.

use super::get::{self, chunk_bytes};
use super::layout::{Commit, Index};
use super::{prune, S3Archive};
use crate::dedup::ops::Deduped;
use crate::error::{AgentError, Result};
use sha2::{Digest, Sha256};
use sparsebak_common::linkref::{hex32, ChunkLoc, DedupOp};
use sparsebak_common::names::{SessionName, VolName};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

/// Longest operation line accepted (as the file-system backend).
const MAX_LINE: usize = 1024;

type Key = (VolName, SessionName);
type Window = Option<(u32, u64, Vec<u8>)>;

/// Committed sessions' newest commits and indexes, as they are being changed.
struct Sessions<'a> {
    a: &'a S3Archive,
    /// Each with its last coalesced read (operations come in address order).
    open: HashMap<Key, (Commit, Index, Window)>,
    changed: BTreeMap<Key, ()>,
}

impl Sessions<'_> {
    fn get(&mut self, loc: &ChunkLoc) -> std::result::Result<&mut (Commit, Index, Window), String> {
        let key = (loc.vol.clone(), loc.session.clone());
        if !self.open.contains_key(&key) {
            let a = self.a;
            let load = || -> Result<(Commit, Index)> {
                prune::settle(a, &loc.vol)?;
                let gen = *get::sessions(a, &loc.vol)?
                    .get(&loc.session)
                    .ok_or_else(|| AgentError::invalid(format!("{} is missing", loc.to_path())))?;
                let c = get::read_commit(a, &loc.vol, &loc.session, gen)?;
                let b = get::load(a, &loc.vol, &c, "index", &c.index)?;
                let ix = Index::decode(&b, a.header()?.chunk_size.max_stored())
                    .map_err(AgentError::invalid)?;
                Ok((c, ix))
            };
            let (c, ix) = load().map_err(|e| e.message)?;
            self.open.insert(key.clone(), (c, ix, None));
        }
        Ok(self.open.get_mut(&key).expect("inserted above"))
    }

    /// One operation; `Err(msg)` is a problem to report, not a failure.
    fn one(&mut self, op: &DedupOp, out: &mut Deduped) -> std::result::Result<(), String> {
        let a = self.a;
        let (_, kix, _) = self.get(&op.keep)?;
        let ki = kix
            .find(op.keep.addr.0)
            .ok_or(format!("kept file {} is missing", op.keep.to_path()))?;
        let (kl, kid) = (kix.locs[ki], kix.packs[kix.locs[ki].pack as usize].clone());
        let (_, dix, _) = self.get(&op.dup)?;
        let di = dix
            .find(op.dup.addr.0)
            .ok_or(format!("duplicate {} is missing", op.dup.to_path()))?;
        let dl = dix.locs[di];
        if dix.packs[dl.pack as usize] == kid && dl.offset == kl.offset {
            out.already += 1;
            return Ok(());
        }
        let (_, kix, win) = self.get(&op.keep)?;
        let bytes = chunk_bytes(a, kix, ki, win)
            .map_err(|m| format!("kept file {}: {m}", op.keep.to_path()))?;
        let got: [u8; 32] = Sha256::digest(bytes).into();
        if got != op.sha256 {
            return Err(format!(
                "kept copy {} is damaged: its sha256 is {}, expected {}; {} was not replaced",
                op.keep.to_path(),
                hex32(&got),
                hex32(&op.sha256),
                op.dup.to_path()
            ));
        }
        let (_, dix, _) = self.get(&op.dup)?;
        let n = match dix.packs.iter().position(|p| *p == kid) {
            Some(n) => n as u32,
            None => {
                dix.packs.push(kid);
                dix.packs.len() as u32 - 1
            }
        };
        dix.locs[di] = super::layout::Loc {
            addr: dl.addr,
            pack: n,
            offset: kl.offset,
            len: kl.len,
        };
        out.linked += 1;
        out.bytes_saved += u64::from(dl.len);
        self.changed
            .insert((op.dup.vol.clone(), op.dup.session.clone()), ());
        Ok(())
    }
}

/// `Dedup` (arch-deduplicate).
pub fn dedup(a: &S3Archive, stream: &mut dyn Read) -> Result<Deduped> {
    a.check_lease()?;
    let mut out = Deduped::default();
    let mut ss = Sessions {
        a,
        open: HashMap::new(),
        changed: BTreeMap::new(),
    };
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| AgentError::io("reading dedup operations", e))?;
        if n == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            return Err(AgentError::invalid(
                "dedup operation line too long or unterminated",
            ));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| AgentError::invalid("dedup operation is not UTF-8"))?;
        let op = DedupOp::parse(text).map_err(AgentError::invalid)?;
        if let Err(m) = ss.one(&op, &mut out) {
            out.problem_count += 1;
            if out.problems.len() < sparsebak_common::proto::MAX_PROBLEMS {
                out.problems.push(m);
            }
        }
    }
    for (vol, s) in ss.changed.keys() {
        let (c, ix, _) = &ss.open[&(vol.clone(), s.clone())];
        let manifest = get::load(a, vol, c, "manifest", &c.manifest)?;
        let info = get::load(a, vol, c, "info", &c.info)?;
        prune::commit_generation(a, vol, c, (&manifest, &info), ix, &[])?;
        a.crash_at("s3-dedup-committed");
        prune::finish(a, vol, false)?;
    }
    Ok(out)
}
