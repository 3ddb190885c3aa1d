//! The `prune` command, and completing interrupted prunes before any
//! command that uses the archive (the prune itself is [`crate::prune`]).

use super::context::{Ctx, Open};
use super::{Event, Ui};
use crate::prune::select::{select, Rule, Selection};
use crate::prune::{complete, pending, plan, timestamps};
use crate::timefmt::now_unix;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};

#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Volume names; none means every enabled volume.
    pub volumes: Vec<String>,
    /// One date-time, or a range DT1,DT2.
    pub session: Option<String>,
    /// Every session before `session`.
    pub all_before: bool,
    pub keep_last: Option<u64>,
    pub keep_days: Option<u64>,
}

/// What prune did with one volume.
#[derive(Debug)]
pub enum VolumeOutcome<'a> {
    /// Fewer than two sessions.
    TooFew(&'a VolName),
    /// The selection holds none of its sessions.
    Empty(&'a VolName),
    /// The question was answered no.
    Cancelled(&'a VolName),
    Pruned {
        vol: &'a VolName,
        pruned: &'a [SessionName],
        target: &'a SessionName,
        /// Chunk files moved and chunks recorded in the target.
        moves: u64,
        chunks: u64,
    },
}

/// Before a command reads or writes volumes: complete their interrupted
/// prunes (`names` empty: every volume's). An invalid name is left for the
/// command to report.
pub fn complete_interrupted(ctx: &Ctx, names: &[String]) -> Result<()> {
    let vols: Vec<VolName> = pending(&ctx.meta)?
        .into_iter()
        .filter(|v| names.is_empty() || names.iter().any(|n| n.as_str() == v.as_str()))
        .collect();
    if vols.is_empty() {
        return Ok(());
    }
    let mut open = ctx.open(true)?;
    for v in &vols {
        log::info!("Completing an interrupted prune of volume {v}…");
        let c = complete(&ctx.meta, &mut open.conn, v)
            .with_context(|| format!("cannot complete the interrupted prune of volume {v}"))?;
        super::record_state(ctx, v);
        log::info!(
            "Volume {v}: sessions {} merged into {}{}.",
            timestamps(&c.head.pruned),
            c.head.target.timestamp(),
            if c.already_done {
                " (the destination had finished it)"
            } else {
                ""
            }
        );
    }
    open.conn.close()
}

/// The selection rule from the options.
fn rule(o: &PruneOptions) -> Result<Rule> {
    let keep = o.keep_last.is_some() || o.keep_days.is_some();
    let ts = |s: &str| {
        SessionName::from_timestamp(s.trim())
            .with_context(|| format!("--session {s:?}: expected YYYYMMDD-HHMMSS"))
    };
    let rule = match (o.session.as_deref(), keep) {
        (Some(_), true) => bail!("--keep-last and --keep-days select by themselves; drop --session"),
        (None, true) if o.all_before => bail!("--all-before goes with --session, not with keep rules"),
        (None, true) => Rule::Keep {
            last: o.keep_last,
            days: o.keep_days,
            now: now_unix(),
        },
        (None, false) => bail!(
            "prune needs --session=YYYYMMDD-HHMMSS[,YYYYMMDD-HHMMSS] (with --all-before: every session before it), \
             or a keep rule: --keep-last=N, --keep-days=N"
        ),
        (Some(s), false) => match s.split_once(',') {
            Some((a, b)) => {
                if o.all_before {
                    // sparsebak 0.2 ignores the second value with --all-before.
                    Rule::AllBefore(ts(a)?)
                } else {
                    Rule::Range(ts(a)?, ts(b)?)
                }
            }
            None if o.all_before => Rule::AllBefore(ts(s)?),
            None => Rule::One(ts(s)?),
        },
    };
    rule.check().map_err(anyhow::Error::msg)?;
    Ok(rule)
}

pub fn prune(ctx: &Ctx, ui: &dyn Ui, o: &PruneOptions) -> Result<()> {
    complete_interrupted(ctx, &o.volumes)?;
    let vols = super::resolve::select_volumes(ctx, &o.volumes)?;
    let rule = rule(o)?;
    let mut open: Option<Open> = None;
    let mut refused = Vec::new();
    for vol in &vols {
        if let Some(r) = prune_volume(ctx, ui, vol, &rule, &mut open)? {
            refused.push(r);
        }
    }
    if let Some(o) = open {
        o.conn.close()?;
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("; "));
    }
    Ok(())
}

/// Prune one volume by `rule`, opening the archive on first use; returns
/// why the selection was refused, if it was.
fn prune_volume(
    ctx: &Ctx,
    ui: &dyn Ui,
    vol: &VolName,
    rule: &Rule,
    open: &mut Option<Open>,
) -> Result<Option<String>> {
    let chain = ctx.meta.chain(vol)?;
    let names: Vec<SessionName> = chain.iter().map(|s| s.name.clone()).collect();
    let sel = match select(&names, rule) {
        Selection::TooFew => {
            ui.event(Event::Pruned(VolumeOutcome::TooFew(vol)));
            return Ok(None);
        }
        Selection::Empty => {
            ui.event(Event::Pruned(VolumeOutcome::Empty(vol)));
            return Ok(None);
        }
        Selection::Newest => {
            return Ok(Some(format!(
                "cannot prune the newest session {} of volume {vol}",
                names[names.len() - 1].timestamp()
            )));
        }
        Selection::Sessions(r) => r,
    };
    let picked = &names[sel.clone()];
    let target = &names[sel.end() + 1];
    if open.is_none() {
        *open = Some(ctx.open(true)?);
    }
    let conn = &mut open.as_mut().expect("opened").conn;
    // A prune merges what dom0's metadata says; the destination must hold it.
    if let Err(e) = crate::consistency::require(
        &ctx.meta,
        &ctx.config.uuid,
        conn,
        vol,
        false,
        super::WRITE_HINT,
    ) {
        return Ok(Some(format!("{e:#}")));
    }
    if picked.len() > 1
        && !ui.confirm(&format!(
            "Prune {} sessions of volume {vol} ({}) by merging them into {}?",
            picked.len(),
            timestamps(picked),
            target.timestamp()
        ))?
    {
        ui.event(Event::Pruned(VolumeOutcome::Cancelled(vol)));
        return Ok(None);
    }
    let conn = &mut open.as_mut().expect("opened").conn;
    let p = plan(&ctx.meta, vol, &chain, sel, &ctx.meta_seal(vol)?)?;
    let c = complete(&ctx.meta, conn, vol).with_context(|| {
        format!("prune of volume {vol} did not finish; the next sparsebak command that uses the archive retries it")
    })?;
    super::record_state(ctx, vol);
    ui.event(Event::Pruned(VolumeOutcome::Pruned {
        vol,
        pruned: &c.head.pruned,
        target: &c.head.target,
        moves: p.moves,
        chunks: p.chunks,
    }));
    Ok(None)
}
