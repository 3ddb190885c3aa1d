//! Does the destination hold what dom0's metadata says? (docs/FORMAT.md §17)
//!
//! dom0's local metadata is the authority (§6). Before `send`, `receive`,
//! `verify` and `prune` touch a volume, dom0 asks the agent for the sha256
//! of each committed session's `info.json` and of `volume.json`
//! (`SessionDigests`, one request per 2000 sessions) and compares them with
//! its own copies ([`compare`]). A session dom0 committed that the
//! destination lacks, an `info.json` that differs (a session directory
//! replaced by an older copy of itself, or altered), or a session dom0
//! pruned that the destination still holds (an older copy of the archive)
//! stops the command, naming volume and session. `arch-check` ([`check`])
//! goes further: every `info.json` and manifest read back and hashed here,
//! and with `--data` every stored chunk file ([`data`]).

pub mod check;
mod compare;
mod data;
pub mod report;
pub mod state;

pub use compare::{compare, LocalVolume};

use crate::dest::AgentConn;
use crate::local_meta::Meta;
use anyhow::{bail, Result};
use serde::Serialize;
use sparsebak_common::names::{SessionName, VolName};
use std::fmt;

/// What is wrong with one thing on the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// dom0 committed it; the destination does not have it.
    Missing,
    /// The destination has it, but its bytes are not dom0's.
    Altered,
    /// The destination holds a state older than the newest dom0 wrote
    /// (a session dom0 pruned, an older `volume.json`).
    Stale,
    /// The destination could not serve it (not a regular file, too large,
    /// unreadable).
    Unreadable,
}

/// One problem, named by volume, session and chunk where they apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: Kind,
    pub volume: VolName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionName>,
    /// The chunk's address, `x<16 hex>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(kind: Kind, volume: &VolName, message: impl Into<String>) -> Self {
        Problem {
            kind,
            volume: volume.clone(),
            session: None,
            chunk: None,
            message: message.into(),
        }
    }
    pub fn session(mut self, s: &SessionName) -> Self {
        self.session = Some(s.clone());
        self
    }
    pub fn chunk(mut self, addr: String) -> Self {
        self.chunk = Some(addr);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "volume {}", self.volume)?;
        if let Some(s) = &self.session {
            write!(f, ", session {}", s.timestamp())?;
        }
        if let Some(c) = &self.chunk {
            write!(f, ", chunk {c}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The cheap check of one volume: its sessions and their `info.json`
/// digests on the destination against dom0's.
pub fn check_volume(meta: &Meta, conn: &mut AgentConn, vol: &VolName) -> Result<Vec<Problem>> {
    let local = LocalVolume::load(meta, vol)?;
    let dest = conn.session_digests(vol)?;
    Ok(compare(vol, &local, &dest))
}

/// Most problems one error message lists.
const LISTED: usize = 10;

/// Check `vol` before a command uses it. Problems stop the command with
/// an error naming each (`hint` says what the user can do), unless
/// `allow` (`--allow-inconsistent`), which only warns.
/// The destination passing, the local chain is recorded as the newest
/// state, if it is not already ([`state::record`]).
pub fn require(
    meta: &Meta,
    archive: &str,
    conn: &mut AgentConn,
    vol: &VolName,
    allow: bool,
    hint: &str,
) -> Result<()> {
    let problems = check_volume(meta, conn, vol)?;
    if problems.is_empty() {
        state::record(meta, archive, vol)?;
        return Ok(());
    }
    if allow {
        for p in &problems {
            log::warn!("{p} (--allow-inconsistent: going on)");
        }
        return Ok(());
    }
    let mut lines: Vec<String> = problems
        .iter()
        .take(LISTED)
        .map(|p| format!("  {p}"))
        .collect();
    if problems.len() > LISTED {
        lines.push(format!("  … and {} more", problems.len() - LISTED));
    }
    let wrote = match state::volume_record(meta, vol)? {
        Some(r) => format!(
            "; dom0 wrote generation {} of it ({} sessions, the newest {})",
            r.generation,
            r.sessions,
            r.last.as_ref().map_or("none", |s| s.timestamp())
        ),
        None => String::new(),
    };
    bail!(
        "the destination does not hold what dom0's metadata says for volume {vol} \
         (lost, rolled back to an older copy, or altered){wrote}:\n{}\n{hint}",
        lines.join("\n")
    )
}
