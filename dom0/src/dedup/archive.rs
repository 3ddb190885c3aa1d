//! `arch-deduplicate`: replace every chunk file whose bytes occur earlier in
//! the archive (oldest session first, then lowest address) by a hard link
//! to that first occurrence.
//!
//! dom0 decides from its local manifests (the authority) and streams one
//! operation per duplicate; the agent checks each (docs/FORMAT.md §12) and
//! never replaces a good duplicate by a damaged kept copy. Running it again
//! finds every pair already linked and saves nothing.

use super::catalog::{index_dir, Catalog};
use super::{key_of, ChunkIndexLookup};
use crate::dest::AgentConn;
use crate::local_meta::Meta;
use crate::progress::Progress;
use anyhow::{bail, Result};
use sparsebak_common::linkref::DedupOp;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{Request, Response};
use sparsebak_common::units::ChunkSize;
use std::io::Write;

#[derive(Debug, Default)]
pub struct DedupReport {
    /// Chunk files (manifest data entries) examined.
    pub chunks: u64,
    /// Distinct stored hashes.
    pub distinct: u64,
    /// Operations sent (duplicates of an earlier file).
    pub ops: u64,
    pub linked: u64,
    pub already: u64,
    pub bytes_saved: u64,
    pub problem_count: u64,
    pub problems: Vec<String>,
}

pub fn deduplicate(
    meta: &Meta,
    vols: &[VolName],
    cs: ChunkSize,
    conn: &mut AgentConn,
    progress: &dyn Progress,
) -> Result<DedupReport> {
    let cat = Catalog::load(meta, vols, cs)?;
    let dir = index_dir(meta)?;
    let index = cat.build_index(dir.path())?;
    let mut rep = DedupReport {
        distinct: index.len(),
        ..Default::default()
    };
    let total: u64 = cat.sessions.iter().map(|s| s.stored_chunks).sum();
    progress.start("dedup", total * cs.bytes());
    let mut fw = conn.start_stream(&Request::Dedup)?;
    let mut pipe_err: Option<std::io::Error> = None;
    let res = cat.for_each(|f| {
        rep.chunks += 1;
        progress.advance(cs.bytes());
        let Some(here) = cat.index_loc(f.ordinal, f.addr) else {
            return Ok(());
        };
        let Some(first) = index.lookup(&key_of(&f.stored))? else {
            bail!("internal error: a chunk of the archive is missing from the dedup index");
        };
        if first == here {
            return Ok(());
        }
        let (Some(keep), Some(dup)) = (cat.loc(first), cat.loc(here)) else {
            bail!("internal error: dedup index names an unknown session");
        };
        rep.ops += 1;
        let op = DedupOp {
            keep,
            dup,
            sha256: f.stored,
        };
        if let Err(e) = fw.write_all(op.to_line().as_bytes()) {
            pipe_err = Some(e);
            bail!("pipe failed");
        }
        Ok(())
    });
    progress.finish();
    if let Some(e) = pipe_err {
        // The agent may have said why it stopped reading.
        return Err(conn.upload_failed(e));
    }
    // Anything else failed on this side: the stream is abandoned unfinished,
    // so the agent sees a broken stream and changes nothing more.
    res?;
    match conn.finish_stream(fw)? {
        Response::Deduped {
            linked,
            already,
            bytes_saved,
            problem_count,
            problems,
        } => {
            rep.linked = linked;
            rep.already = already;
            rep.bytes_saved = bytes_saved;
            rep.problem_count = problem_count;
            rep.problems = problems;
            if linked + already + problem_count > rep.ops {
                bail!("the agent reported more dedup results than operations were sent");
            }
            Ok(rep)
        }
        r => bail!("unexpected answer to Dedup: {r:?}"),
    }
}
