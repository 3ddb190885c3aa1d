//! `arch-check`: the whole archive against dom0's metadata
//! (docs/FORMAT.md §17.2); `--data` reads every stored chunk file once.
//! The checking is [`crate::consistency::check`]; this opens the archive
//! (read-only, after completing interrupted prunes) and closes it.

use super::context::Ctx;
use super::Ui;
use crate::consistency::check::check_archive;
use crate::consistency::report::CheckReport;
use anyhow::Result;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read and check every stored chunk file.
    pub data: bool,
}

pub fn arch_check(ctx: &Ctx, ui: &dyn Ui, o: &CheckOptions) -> Result<CheckReport> {
    super::prune::complete_interrupted(ctx, &[])?;
    let mut conn = ctx.open(false)?.conn;
    let pb = ui.progress();
    let r = check_archive(&ctx.meta, &ctx.config, &mut conn, o.data, pb.as_ref())?;
    conn.close()?;
    Ok(r)
}
