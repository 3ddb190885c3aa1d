//! The operations behind each `sparsebak` command, as library functions.
//!
//! Each command has a module taking a small options struct and a
//! [`context::Ctx`] (configuration, local metadata, a [`context::Connector`]
//! to the destination, the [`crate::lvm::Lvm`] layer). Operations never
//! print: they return report structs, and what happens while they run
//! (per-volume results, questions, progress) goes through [`Ui`]. `cli/`
//! parses arguments, calls one function here and prints the report.

pub mod add;
pub mod arch_check;
pub mod arch_delete;
pub mod arch_init;
pub mod arch_passwd;
pub mod arch_recover;
pub mod context;
pub mod dedup;
pub mod delete;
pub mod diff;
pub mod legacy;
pub mod list;
pub mod monitor;
pub mod prune;
pub mod qube_add;
pub mod qube_send;
pub mod receive;
pub mod reflink;
pub mod resolve;
pub mod restore_qube;
pub mod send;
pub mod thin;
pub mod verify;

#[cfg(test)]
mod tests;

use crate::progress::{Progress, Silent};
use crate::send::SendReport;
use anyhow::Result;
use sparsebak_common::names::VolName;
use sparsebak_common::units::Bytes;

/// Open the archive and check that the destination holds what dom0's
/// metadata says for `vol` (docs/FORMAT.md §17): the connection, or an
/// error naming what is missing, replaced or stale; with `allow` only
/// warnings.
pub fn consistent(
    ctx: &context::Ctx,
    write: bool,
    vol: &VolName,
    allow: bool,
) -> Result<crate::dest::AgentConn> {
    let mut conn = ctx.open(write)?.conn;
    crate::consistency::require(
        &ctx.meta,
        &ctx.config.uuid,
        &mut conn,
        vol,
        allow,
        READ_HINT,
    )?;
    Ok(conn)
}

/// What to do when a receive or verify finds the destination inconsistent.
pub const READ_HINT: &str = "Nothing was read. `sparsebak arch-check` reports every problem; \
     `--allow-inconsistent` restores or verifies what is still there.";

/// What to do when a send or prune finds the destination inconsistent.
pub const WRITE_HINT: &str = "Nothing was written: the next session would build on what the \
     destination no longer holds. `sparsebak arch-check` reports every problem; receive or \
     verify with `--allow-inconsistent` reads what is still there (docs/FORMAT.md §17).";

/// After a change to `vol` committed on both sides (a send, a prune):
/// record it as the newest state dom0 wrote (FORMAT.md §17.3). A failure
/// only warns: the next check of the volume records it.
pub fn record_state(ctx: &context::Ctx, vol: &VolName) {
    if let Err(e) = crate::consistency::state::record(&ctx.meta, &ctx.config.uuid, vol) {
        log::warn!("volume {vol}: cannot record its newest state: {e:#}");
    }
}

/// What happened, as it happens, for the command's report.
#[derive(Debug)]
pub enum Event<'a> {
    /// send: the archive is open.
    Sending { dest: String, free: Bytes },
    /// send: one volume stored a session or found no changes.
    Sent {
        vol: &'a VolName,
        report: &'a SendReport,
        dedup: bool,
    },
    /// monitor: a volume was looked at.
    Monitored {
        vol: &'a VolName,
        state: monitor::Tracked,
    },
    /// delete, arch-delete: a snapshot (`VG/LV`) was removed.
    SnapshotRemoved(&'a str),
    /// arch-delete: the archive on the destination is gone.
    ArchiveDeleted { dest: String },
    /// arch-deduplicate: the archive is open and settled.
    Deduplicating { dest: String, volumes: usize },
    /// prune: one volume's outcome.
    Pruned(prune::VolumeOutcome<'a>),
}

/// The person running a command: questions, progress, and the events of
/// the report.
pub trait Ui {
    /// A yes/no question (an unattended run answers yes).
    fn confirm(&self, question: &str) -> Result<bool>;
    /// Show `warning`, then ask for one of `accepted` to be typed; never
    /// answered for the user.
    fn confirm_typed(&self, warning: &str, question: &str, accepted: &[&str]) -> Result<bool>;
    fn progress(&self) -> Box<dyn Progress>;
    fn event(&self, e: Event<'_>);
}

/// A [`Ui`] for unattended library use: answers yes/no questions with yes
/// (as `-u` does), never the typed ones that a person must answer, draws
/// nothing and ignores events.
pub struct Quiet;

impl Ui for Quiet {
    fn confirm(&self, _question: &str) -> Result<bool> {
        Ok(true)
    }
    fn confirm_typed(&self, _warning: &str, _question: &str, _accepted: &[&str]) -> Result<bool> {
        Ok(false)
    }
    fn progress(&self) -> Box<dyn Progress> {
        Box::new(Silent)
    }
    fn event(&self, _e: Event<'_>) {}
}
