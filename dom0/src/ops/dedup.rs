//! `send --dedup` and `arch-deduplicate` (docs/FORMAT.md §12): the steps
//! both take before anything is written, and arch-deduplicate itself.

use super::context::Ctx;
use super::{Event, Ui};
use crate::dedup::archive::{deduplicate, DedupReport};
use crate::dedup::catalog::{index_dir, Catalog};
use crate::dedup::run::RunDedup;
use crate::dest::client::DestError;
use crate::dest::AgentConn;
use crate::prune::{complete, pending};
use anyhow::{Context, Result};
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{ErrorKind, Request};
use std::time::{Duration, Instant};

/// Every volume with sessions in the archive (disabled ones too: their
/// chunk files are link targets like any other).
fn all_volumes(ctx: &Ctx) -> Vec<VolName> {
    ctx.config.volumes.keys().cloned().collect()
}

/// Before deduplicating: complete every interrupted prune (the index covers
/// every volume, and must not name a chunk file a prune is moving), then
/// check that the destination can hard-link at all, before anything is sent.
fn settle(ctx: &Ctx, conn: &mut AgentConn) -> Result<()> {
    for v in pending(&ctx.meta)? {
        log::info!("Completing an interrupted prune of volume {v}…");
        complete(&ctx.meta, conn, &v)
            .with_context(|| format!("cannot complete the interrupted prune of volume {v}"))?;
    }
    conn.ok(&Request::CheckHardlinks)
}

/// `send --dedup`: settle, check, and build the index of the archive.
pub fn prepare_send(ctx: &Ctx, conn: &mut AgentConn) -> Result<RunDedup> {
    settle(ctx, conn)?;
    log::info!("Building the deduplication index from the local manifests…");
    let t0 = Instant::now();
    let cat = Catalog::load(&ctx.meta, &all_volumes(ctx), ctx.config.chunk_size)?;
    let dir = index_dir(&ctx.meta)?;
    let index = cat.build_index(dir.path())?;
    log::info!(
        "Deduplication index: {} distinct chunks in {} sessions ({:.1}s).",
        index.len(),
        cat.sessions.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(RunDedup::new(Box::new(index), cat, Some(dir)))
}

/// Most damaged link targets one `send --dedup` steps around.
const MAX_AVOIDED: usize = 16;

/// A send failed: if the agent refused a link target as damaged, never link
/// to that file again in this run and say so; `true` means "send the volume
/// again". A damaged file must not stop every later backup (FORMAT.md §12.6).
pub fn avoid_damaged(d: &mut RunDedup, vol: &VolName, e: &anyhow::Error) -> bool {
    let Some(de) = e.chain().find_map(|c| c.downcast_ref::<DestError>()) else {
        return false;
    };
    if de.kind != ErrorKind::Mismatch {
        return false;
    }
    let Some(loc) = damaged_target(&de.message) else {
        return false;
    };
    if d.avoided() >= MAX_AVOIDED || !d.avoid(loc.clone()) {
        return false;
    }
    log::warn!(
        "{}; sending volume {vol} again without linking to it (run `sparsebak verify {}`)",
        de.message,
        loc.vol
    );
    true
}

/// The file named by the agent's "link target PATH is damaged" message.
fn damaged_target(msg: &str) -> Option<ChunkLoc> {
    let path = msg
        .split("link target ")
        .nth(1)?
        .split(" is damaged")
        .next()?;
    let mut parts: Vec<&str> = path.rsplitn(6, '/').collect();
    if parts.len() < 6 {
        return None;
    }
    parts.truncate(5);
    parts.reverse();
    ChunkLoc::parse(&parts.join("/")).ok()
}

/// What arch-deduplicate did, and how long it took.
pub struct DeduplicateReport {
    pub report: DedupReport,
    pub elapsed: Duration,
}

pub fn arch_deduplicate(ctx: &Ctx, ui: &dyn Ui) -> Result<DeduplicateReport> {
    let mut open = ctx.open(true)?;
    settle(ctx, &mut open.conn)?;
    let vols = all_volumes(ctx);
    ui.event(Event::Deduplicating {
        dest: ctx.config.dest.describe(),
        volumes: vols.len(),
    });
    let pb = ui.progress();
    let t0 = Instant::now();
    let report = deduplicate(
        &ctx.meta,
        &vols,
        ctx.config.chunk_size,
        &mut open.conn,
        pb.as_ref(),
    )?;
    open.conn.close()?;
    Ok(DeduplicateReport {
        report,
        elapsed: t0.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn damaged_target_is_read_from_the_agents_message() {
        let m = "storing S_20260102-000000 of vb: link target /mnt/a b/volumes/x/sparsebak/volumes/volumes/S_20260101-000000/000000000/x0000000000030000 is damaged: its sha256 is 00, expected 11";
        let l = super::damaged_target(m).unwrap();
        assert_eq!(
            l.to_path(),
            "volumes/volumes/S_20260101-000000/000000000/x0000000000030000"
        );
        assert!(super::damaged_target("link target /x is damaged").is_none());
        assert!(super::damaged_target("something else").is_none());
    }
}
