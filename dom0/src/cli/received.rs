//! The receive and verify flows and their reports, shared by archives of our
//! own (commands.rs) and sparsebak 0.2 archives (legacy.rs): only how the
//! connection is opened and which restore runs differ.

use super::args::Opts;
use super::ui::{confirm, mb_per_s, progress};
use super::Done;
use crate::archive::Ctx;
use crate::dest::AgentConn;
use crate::output::Output;
use crate::progress::Progress;
use crate::restore::RestoreReport;
use anyhow::{bail, Result};
use sparsebak_common::names::SessionName;
use sparsebak_common::units::Bytes;
use std::fmt::Display;
use std::path::Path;

/// Ask before overwriting `target`, connect, prepare the target (an LV is
/// created when the archive's source is LVM), run `restore` into it and
/// commit it; on failure the target is abandoned. Prints the report;
/// `archive` is inserted after the session name (empty for our own).
#[allow(clippy::too_many_arguments)]
pub(super) fn receive(
    o: &Opts,
    ctx: &Ctx,
    vol: &dyn Display,
    session: &SessionName,
    volsize: Bytes,
    target: &Path,
    archive: &str,
    connect: impl FnOnce() -> Result<AgentConn>,
    restore: impl FnOnce(&mut AgentConn, &Output, &dyn Progress) -> Result<RestoreReport>,
) -> Result<()> {
    if Output::exists(target)
        && !confirm(
            &format!(
                "This will erase all existing data in {}. Continue?",
                target.display()
            ),
            o.unattended,
        )?
    {
        bail!("receive cancelled; {} is unchanged", target.display());
    }
    let mut conn = connect()?;
    let device = super::thin::prepare_lv_target(ctx, target, volsize)?;
    let out = Output::create(
        device.as_deref().unwrap_or(target),
        volsize,
        device.is_some(),
    )?;
    let pb = progress(o.unattended);
    match restore(&mut conn, &out, pb.as_ref()) {
        Ok(r) => {
            out.commit()?;
            conn.close()?;
            let secs = r.elapsed.as_secs_f64();
            println!(
                "Received {vol} session {}{archive} into {}: {} ({} chunks, {} zero) in {:.1}s ({}).",
                session.timestamp(),
                target.display(),
                Bytes(r.volsize.0),
                r.chunks,
                r.zero_chunks,
                secs,
                mb_per_s(r.volsize.0, secs)
            );
            Ok(())
        }
        Err(e) => {
            out.abandon();
            Err(e.context(format!("receive of {vol} into {} failed", target.display())))
        }
    }
}

/// Connect, check the session with `restore` (no output) and report:
/// `Done::Damaged` with every bad chunk on stderr if any failed.
pub(super) fn verify(
    o: &Opts,
    vol: &dyn Display,
    archive: &str,
    connect: impl FnOnce() -> Result<AgentConn>,
    restore: impl FnOnce(&mut AgentConn, &dyn Progress) -> Result<RestoreReport>,
) -> Result<Done> {
    let mut conn = connect()?;
    let pb = progress(o.unattended);
    let r = restore(&mut conn, pb.as_ref())?;
    conn.close()?;
    let s = r.session.as_ref().map(|s| s.timestamp()).unwrap_or("-");
    if r.bad.is_empty() {
        println!(
            "Verified {vol} session {s}{archive}: {} chunks ({} stored, {} zero) restore {} correctly in {:.1}s.",
            r.chunks,
            r.data_chunks,
            r.zero_chunks,
            Bytes(r.volsize.0),
            r.elapsed.as_secs_f64()
        );
        return Ok(Done::Ok);
    }
    for b in &r.bad {
        eprintln!("sparsebak: damaged: {b}");
    }
    eprintln!(
        "sparsebak: verify of {vol} session {s} FAILED: {} bad chunk(s)",
        r.bad.len()
    );
    Ok(Done::Damaged)
}

/// The rows of `list` without a volume: name, session count, last session,
/// whether disabled, or recovered and not yet added again (arch-recover).
pub(super) fn print_volume_rows(rows: Vec<serde_json::Value>) {
    for r in rows {
        let n = r["sessions"].as_u64().unwrap_or(0);
        println!(
            "  {:<40} {:>4} {}{}{}",
            r["volume"].as_str().unwrap_or(""),
            n,
            if n == 1 { "session" } else { "sessions" },
            r["last"]
                .as_str()
                .map(|l| format!(", last {l}"))
                .unwrap_or_default(),
            match (r["enabled"] == false, r["recovered"] == true) {
                (true, _) => " (disabled)",
                (false, true) => " (recovered: `add` it to send)",
                _ => "",
            }
        );
    }
}
