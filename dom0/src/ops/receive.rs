//! `receive`: restore a volume as of a session into a file or block
//! device. The flow is shared with sparsebak 0.2 archives
//! ([`super::legacy`]): only how the connection is opened and which
//! restore runs differ.

use super::context::Ctx;
use super::resolve::{one_session, vol_name};
use super::{thin, Ui};
use crate::dest::AgentConn;
use crate::output::Output;
use crate::progress::Progress;
use crate::restore::{restore, select, RestoreReport};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::SessionName;
use sparsebak_common::units::Bytes;
use std::fmt::Display;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default)]
pub struct ReceiveOptions {
    pub volume: String,
    /// The file or block device to write (required).
    pub save_to: Option<PathBuf>,
    /// One session's date-time; the latest when `None`.
    pub session: Option<String>,
    /// Warn instead of refusing when the destination does not hold what
    /// dom0's metadata says (docs/FORMAT.md §17).
    pub allow_inconsistent: bool,
}

#[derive(Debug)]
pub struct Received {
    pub vol: String,
    pub session: SessionName,
    pub target: PathBuf,
    pub report: RestoreReport,
    /// The session received is not the volume's latest.
    pub not_latest: bool,
}

pub fn receive(ctx: &Ctx, ui: &dyn Ui, o: &ReceiveOptions) -> Result<Received> {
    super::prune::complete_interrupted(ctx, std::slice::from_ref(&o.volume))?;
    let vol = vol_name(&o.volume)?;
    ctx.config.volume(&vol)?;
    let target = o
        .save_to
        .as_deref()
        .context("receive needs --save-to=PATH (a file or block device)")?;
    let want = one_session(o.session.as_deref(), "receive")?;
    let chain = ctx.meta.chain(&vol)?;
    let sel = select(&chain, &vol, want.as_ref())?;
    let info = &chain[sel];
    let report = receive_into(
        ctx,
        ui,
        &vol,
        info.volsize,
        target,
        || super::consistent(ctx, false, &vol, o.allow_inconsistent),
        |conn, out, pb| restore(ctx, conn, &vol, Some(&info.name), Some(out), pb),
    )?;
    if sel + 1 == chain.len() {
        super::reflink::received_latest(ctx, &vol, target);
    }
    Ok(Received {
        vol: vol.to_string(),
        session: info.name.clone(),
        target: target.into(),
        report,
        not_latest: sel + 1 != chain.len(),
    })
}

/// Ask before overwriting `target`, connect, prepare the target (an LV is
/// created when the archive's source is LVM), run `restore` into it and
/// commit it; on failure the target is abandoned.
pub fn receive_into(
    ctx: &Ctx,
    ui: &dyn Ui,
    vol: &dyn Display,
    volsize: Bytes,
    target: &Path,
    connect: impl FnOnce() -> Result<AgentConn>,
    restore: impl FnOnce(&mut AgentConn, &Output, &dyn Progress) -> Result<RestoreReport>,
) -> Result<RestoreReport> {
    if Output::exists(target)
        && !ui.confirm(&format!(
            "This will erase all existing data in {}. Continue?",
            target.display()
        ))?
    {
        bail!("receive cancelled; {} is unchanged", target.display());
    }
    super::reflink::refuse_copies_as_target(ctx, target)?;
    let mut conn = connect()?;
    let device = thin::prepare_lv_target(ctx, target, volsize)?;
    let out = Output::create(
        device.as_deref().unwrap_or(target),
        volsize,
        device.is_some(),
    )?;
    let pb = ui.progress();
    match restore(&mut conn, &out, pb.as_ref()) {
        Ok(r) => {
            out.commit()?;
            conn.close()?;
            Ok(r)
        }
        Err(e) => {
            out.abandon();
            Err(e.context(format!("receive of {vol} into {} failed", target.display())))
        }
    }
}
