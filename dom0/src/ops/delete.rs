//! `delete`: remove a volume from the archive, then its snapshots, its
//! local metadata and, last, its configuration entry.

use super::context::Ctx;
use super::resolve::vol_name;
use super::{thin, Ui};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::proto::ErrorKind;

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub volume: String,
}

/// Returns the volume deleted; `ctx.config` is saved without it.
pub fn delete(ctx: &mut Ctx, ui: &dyn Ui, o: &DeleteOptions) -> Result<VolName> {
    let vol = vol_name(&o.volume)?;
    if !ctx.config.volumes.contains_key(&vol) {
        bail!("volume {vol} is not configured");
    }
    if !ui.confirm(&format!(
        "Delete volume {vol} and all its sessions from the archive?"
    ))? {
        bail!("delete cancelled");
    }
    let mut open = ctx.open(true)?;
    match open.conn.delete_volume(&vol)? {
        Ok(()) => {}
        Err(refused) if refused.kind == ErrorKind::NotFound => {}
        Err(refused) => return Err(refused.into()),
    }
    open.conn.close()?;
    thin::drop_snapshots(ctx, ui, &vol, &ctx.config.volumes[&vol]);
    super::reflink::drop_copies(ctx, ui, &vol, &ctx.config.volumes[&vol]);
    let d = ctx.meta.vol_dir(&vol);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))?;
    }
    ctx.config.volumes.remove(&vol);
    ctx.config.save(&ctx.meta.root)?;
    // The archive moves on to its next state (FORMAT.md §17.3).
    crate::consistency::state::forget(&ctx.meta, &ctx.config.uuid, &vol)?;
    Ok(vol)
}
