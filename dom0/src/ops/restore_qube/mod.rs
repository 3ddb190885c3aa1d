//! `restore-qube`: bring back whole qubes from the archive, safely.
//!
//! The library entry point is [`restore_qube`]: options in, a report out,
//! nothing printed, Qubes reached only through [`QvmTools`]. It can be
//! called by any front end holding a [`Ctx`] (the CLI, a qrexec service).
//!
//! For each qube, from its settings record (docs/FORMAT.md §16) as of the
//! chosen time, a plan is made first ([`plan`]) and checked whole before
//! anything changes; `dry_run` stops there. Then, in order:
//!
//! 1. a running target is refused, or with `shutdown` stopped
//!    (`qvm-shutdown --wait --timeout`);
//! 2. a missing qube is created from the record (`qvm-create`; its
//!    template first when that is missing too and is in the archive), and
//!    its properties, features, tags, firewall rules and device
//!    assignments applied ([`devices`]); a property naming a qube that
//!    does not exist is left at its default, a device whose backend qube
//!    does not exist is not assigned, each with a warning. An existing
//!    (halted) qube's settings are made the record's, every difference a
//!    step ([`settle`]), unless `data_only`; its name and class never
//!    change;
//! 3. each volume is written through the same checked restore path as
//!    `receive`, straight into the LV. An existing qube's LV is first
//!    renamed to `<LV>.pre-restore-<UTC time>`, never overwritten, and the
//!    report says how to go back.
//!
//! Why the LV path and not `qvm-volume import`: import streams every byte
//! of the volume through qubesd (zeros included), so a mostly empty 100 GiB
//! private volume costs 100 GiB of writes and becomes fully provisioned in
//! the thin pool; the LV path discards the new LV and writes only the
//! non-zero chunks, each verified against the manifest just before it is
//! written (the code `receive` uses). The price is that the replaced volume
//! is kept as a renamed LV rather than as a Qubes revision, so
//! `qvm-volume revert` does not list it. In an archive of a file-reflink
//! pool the qube's image is written instead, its old one kept as a reflink
//! copy ([`image`]).

mod devices;
mod exec;
mod fetch;
mod image;
mod plan;
mod settle;

use super::context::Ctx;
use super::Ui;
use crate::config::SourceSpec;
use crate::dest::DestKind;
use crate::qubes::query::{list_qubes, PoolInfo, VolumeInfo};
use crate::qubes::QvmTools;
use anyhow::{bail, Result};
use sparsebak_common::names::SessionName;
use std::time::Duration;

pub use plan::Step;

#[derive(Clone, Debug)]
pub struct RestoreQubeOptions {
    /// Qubes by name (as recorded in the archive); empty with `all`.
    pub qubes: Vec<String>,
    /// Every qube of the archive, in dependency order.
    pub all: bool,
    /// With `all`: qubes left out (by their recorded name).
    pub exclude: Vec<String>,
    /// Restore each qube as of its newest settings record at or before
    /// this date-time (`YYYYMMDD-HHMMSS`, UTC); the latest when `None`.
    pub session: Option<String>,
    /// Restore the (one) qube under this new name.
    pub as_name: Option<String>,
    /// Create missing qubes in this Qubes storage pool.
    pub pool: Option<String>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Shut a running target down instead of refusing.
    pub shutdown: bool,
    /// An existing qube keeps its settings: only its data is restored.
    pub data_only: bool,
    /// How long `qvm-shutdown --wait` may take.
    pub shutdown_timeout: Duration,
    /// Go on (with warnings) when the destination does not hold exactly
    /// what dom0 sent (docs/FORMAT.md §17).
    pub allow_inconsistent: bool,
}

impl Default for RestoreQubeOptions {
    fn default() -> Self {
        RestoreQubeOptions {
            qubes: Vec::new(),
            all: false,
            exclude: Vec::new(),
            session: None,
            as_name: None,
            pool: None,
            dry_run: false,
            shutdown: false,
            data_only: false,
            shutdown_timeout: Duration::from_secs(120),
            allow_inconsistent: false,
        }
    }
}

/// The volume a step writes, as Qubes' tools describe it.
struct Target<'a> {
    qube: &'a str,
    volume: &'a str,
    info: &'a VolumeInfo,
    pool: &'a PoolInfo,
    /// Created by this run: nothing to keep.
    fresh: bool,
}

#[derive(Debug, Default)]
pub struct RestoreQubeReport {
    /// Each qube restored, with the session of its settings record used.
    pub records: Vec<(String, SessionName)>,
    /// Every step, in order (done, or only planned with `dry_run`).
    pub steps: Vec<Step>,
    pub dry_run: bool,
    /// Properties left at their default, other things not restored.
    pub warnings: Vec<String>,
    /// How to go back, per replaced volume.
    pub undo: Vec<String>,
}

/// Restore qubes as `o` says. With `dry_run` nothing is changed and the
/// report's steps are the plan.
pub fn restore_qube(
    ctx: &mut Ctx,
    qvm: &dyn QvmTools,
    ui: &dyn Ui,
    o: &RestoreQubeOptions,
) -> Result<RestoreQubeReport> {
    if !matches!(
        ctx.config.source,
        Some(SourceSpec::Lvm { .. } | SourceSpec::Reflink { .. })
    ) {
        bail!(
            "restore-qube writes qubes' volumes in the pool the archive backs up, and this \
             archive's source is neither an LVM thin pool nor a file-reflink pool: restore a \
             volume with `sparsebak receive VOLUME --save-to=IMAGE` while its qube is halted"
        );
    }
    // A dry run changes nothing, not even by completing a prune.
    let pending = crate::prune::journal::pending(&ctx.meta)?;
    match (o.dry_run, pending.is_empty()) {
        (true, false) => {
            bail!(
            "an interrupted prune of {} must be completed first (any command without --dry-run \
             completes it); nothing was changed",
            pending.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
        )
        }
        (false, false) => super::prune::complete_interrupted(ctx, &[])?,
        _ => {}
    }
    let existing = list_qubes(qvm)?;
    let records = fetch::records(ctx, o, &existing)?;
    let sources = records
        .iter()
        .map(|f| (f.record.name.clone(), f.session.clone()))
        .collect();
    let dest_vm = match &ctx.config.dest.kind {
        DestKind::Qubes { vm } | DestKind::QubesSsh { vm, .. } => Some(vm.clone()),
        _ => None,
    };
    let source = ctx.config.source.clone();
    let planned = plan::plan(qvm, o, &existing, records, dest_vm, source.as_ref())?;
    let mut report = RestoreQubeReport {
        records: sources,
        dry_run: o.dry_run,
        warnings: planned.warnings,
        ..Default::default()
    };
    if o.dry_run {
        report.steps = planned.steps;
        return Ok(report);
    }
    exec::run(ctx, qvm, ui, planned.steps, o.shutdown_timeout, &mut report)?;
    Ok(report)
}
