//! Turning command-line values into typed ones, in one place for every
//! command: volume names (and the volumes a command works on), `--session`
//! for one session, `--dest` with `--subdir` and `--source`.

use super::context::Ctx;
use crate::config::SourceSpec;
use crate::dest::DestSpec;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};

pub fn vol_name(s: &str) -> Result<VolName> {
    Ok(VolName::new(s)?)
}

/// `--session` for commands that restore one session (receive, verify): a
/// single date-time as `list` shows it (an `S_` prefix is accepted too).
pub fn one_session(session: Option<&str>, cmd: &str) -> Result<Option<SessionName>> {
    let Some(s) = session else {
        return Ok(None);
    };
    if s.contains(',') {
        bail!(
            "--session {s:?}: {cmd} takes one session, not a range (ranges are for prune; \
             `sparsebak list VOL` shows the sessions)"
        );
    }
    let ts = s.strip_prefix("S_").unwrap_or(s);
    SessionName::from_timestamp(ts)
        .map(Some)
        .with_context(|| format!("--session {s:?}: expected YYYYMMDD-HHMMSS"))
}

/// Where an archive is and what it backs up, as given to arch-init and
/// arch-recover.
#[derive(Clone, Debug, Default)]
pub struct Location {
    pub dest: Option<String>,
    pub subdir: Option<String>,
    pub source: Option<String>,
}

impl Location {
    /// `--dest` with `--subdir`, and `--source` if given; `missing` is the
    /// error without `--dest`.
    pub fn resolve(&self, missing: &str) -> Result<(DestSpec, Option<SourceSpec>)> {
        let dest = self.dest.as_deref().with_context(|| missing.to_string())?;
        let dest = DestSpec::parse(dest, self.subdir.as_deref().unwrap_or(""))?;
        let source = self
            .source
            .as_deref()
            .map(str::parse::<SourceSpec>)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        Ok((dest, source))
    }
}

/// The named volumes (each must be configured and enabled), or every enabled one.
pub fn select_volumes(ctx: &Ctx, names: &[String]) -> Result<Vec<VolName>> {
    let vols: Vec<VolName> = if names.is_empty() {
        let enabled = ctx.config.volumes.iter().filter(|(_, e)| e.enabled);
        enabled.map(|(v, _)| v.clone()).collect()
    } else {
        let vols = names
            .iter()
            .map(|n| vol_name(n))
            .collect::<Result<Vec<_>>>()?;
        for v in &vols {
            ctx.config.volume(v)?;
        }
        vols
    };
    if vols.is_empty() {
        bail!("no volumes configured: add one with `sparsebak add VOLUME`");
    }
    Ok(vols)
}
