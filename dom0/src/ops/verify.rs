//! `verify`: check that a session can be restored, chunk by chunk, without
//! writing anything. Shared with sparsebak 0.2 archives ([`super::legacy`]).

use super::context::Ctx;
use super::resolve::{one_session, vol_name};
use super::Ui;
use crate::dest::AgentConn;
use crate::progress::Progress;
use crate::restore::{restore, RestoreReport};
use anyhow::Result;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub volume: String,
    /// One session's date-time; the latest when `None`.
    pub session: Option<String>,
    /// Warn instead of refusing when the destination does not hold what
    /// dom0's metadata says (docs/FORMAT.md §17).
    pub allow_inconsistent: bool,
}

/// The report names the session checked; `bad` lists every damaged or
/// missing chunk.
#[derive(Debug)]
pub struct Verified {
    pub vol: String,
    pub report: RestoreReport,
}

pub fn verify(ctx: &Ctx, ui: &dyn Ui, o: &VerifyOptions) -> Result<Verified> {
    super::prune::complete_interrupted(ctx, std::slice::from_ref(&o.volume))?;
    let vol = vol_name(&o.volume)?;
    ctx.config.volume(&vol)?;
    let want = one_session(o.session.as_deref(), "verify")?;
    let report = verify_with(
        ui,
        || super::consistent(ctx, false, &vol, o.allow_inconsistent),
        |conn, pb| restore(ctx, conn, &vol, want.as_ref(), None, pb),
    )?;
    Ok(Verified {
        vol: vol.to_string(),
        report,
    })
}

/// Connect and check the session with `restore` (no output).
pub fn verify_with(
    ui: &dyn Ui,
    connect: impl FnOnce() -> Result<AgentConn>,
    restore: impl FnOnce(&mut AgentConn, &dyn Progress) -> Result<RestoreReport>,
) -> Result<RestoreReport> {
    let mut conn = connect()?;
    let pb = ui.progress();
    let r = restore(&mut conn, pb.as_ref())?;
    conn.close()?;
    Ok(r)
}
