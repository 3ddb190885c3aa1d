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
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::proto::Request;
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
    refuse_encrypted(ctx, "send --dedup")?;
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

/// A send failed: if the agent refused a link target as damaged (its error
/// reply names the file: `refused`, from [`AgentConn::take_damaged`]), never
/// link to that file again in this run and say so; `true` means "send the
/// volume again". A damaged file must not stop every later backup
/// (FORMAT.md §12.6).
pub fn avoid_damaged(d: &mut RunDedup, vol: &VolName, refused: Option<DestError>) -> bool {
    let Some((loc, message)) = refused.and_then(|r| Some((r.damaged?, r.message))) else {
        return false;
    };
    if d.avoided() >= MAX_AVOIDED || !d.avoid(loc.clone()) {
        return false;
    }
    log::warn!(
        "{message}; sending volume {vol} again without linking to it (run `sparsebak verify {}`)",
        loc.vol
    );
    true
}

/// What arch-deduplicate did, and how long it took.
pub struct DeduplicateReport {
    pub report: DedupReport,
    pub elapsed: Duration,
    /// The archive is in an object store: a duplicate became an index
    /// entry pointing at the kept copy, not a hard link (docs/FORMAT.md
    /// §21.5), and its bytes are freed with the pack that held them.
    pub object_store: bool,
}

/// Format 2 binds every chunk to its volume and address, so no chunk file
/// can stand for another: encrypted archives are not deduplicated
/// (docs/FORMAT.md §18.7).
fn refuse_encrypted(ctx: &Ctx, what: &str) -> Result<()> {
    if ctx.keys()?.is_some() {
        bail!(
            "{what}: this archive is encrypted, and an encrypted chunk is bound to its volume and \
             address, so it cannot be shared by hard links; encrypted archives are not deduplicated"
        );
    }
    Ok(())
}

pub fn arch_deduplicate(ctx: &Ctx, ui: &dyn Ui) -> Result<DeduplicateReport> {
    refuse_encrypted(ctx, "arch-deduplicate")?;
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
        object_store: ctx.config.dest.is_store(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::MemIndex;
    use sparsebak_common::linkref::ChunkLoc;
    use sparsebak_common::proto::ErrorKind;
    use sparsebak_common::units::ChunkSize;

    fn run() -> RunDedup {
        let cat = Catalog {
            sessions: vec![],
            chunk_size: ChunkSize::from_factor(1).unwrap(),
        };
        RunDedup::new(Box::new(MemIndex::default()), cat, None)
    }

    /// The damaged file is the one the agent's reply names in its typed
    /// field; nothing else counts.
    #[test]
    fn the_damaged_target_is_the_one_the_reply_names() {
        let loc = ChunkLoc::parse("volumes/volumes/S_20260101-000000/000000000/x0000000000030000")
            .unwrap();
        let refused = |damaged| DestError {
            kind: ErrorKind::Mismatch,
            message: "storing S_20260102-000000 of vb: link target /x is damaged".into(),
            damaged,
        };
        let vol = VolName::new("vb").unwrap();
        let mut d = run();
        assert!(avoid_damaged(
            &mut d,
            &vol,
            Some(refused(Some(loc.clone())))
        ));
        assert_eq!(d.avoided(), 1);
        // The same file again is not a reason to send again.
        assert!(!avoid_damaged(&mut d, &vol, Some(refused(Some(loc)))));
        assert!(!avoid_damaged(&mut d, &vol, Some(refused(None))));
        assert!(!avoid_damaged(&mut d, &vol, None));
    }
}
