//! The `prune` command, and completing interrupted prunes before any
//! command that uses the archive.

use super::args::{Cli, Command, Opts};
use super::ui::confirm;
use super::Done;
use crate::archive::{Ctx, Open};
use crate::prune::select::{select, Rule, Selection};
use crate::prune::{complete, pending, plan, timestamps};
use crate::timefmt::now_unix;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};

/// Run before every command: refuse prune-only options elsewhere, and
/// complete the interrupted prunes of the volumes a command is about to
/// read or write (`delete` and local-only commands need none; an invalid
/// name is left for the command to report).
pub fn before_command(ctx: &Ctx, cli: &Cli) -> Result<()> {
    let o = &cli.opts;
    if !matches!(cli.command, Command::Prune { .. }) {
        for (set, name) in [
            (o.all_before, "--all-before"),
            (o.keep_last.is_some(), "--keep-last"),
            (o.keep_days.is_some(), "--keep-days"),
        ] {
            if set {
                bail!("{name} is only accepted by prune");
            }
        }
    }
    let named: Vec<&String> = match &cli.command {
        Command::Send { volumes } | Command::Prune { volumes } => volumes.iter().collect(),
        Command::Receive { volume } | Command::Verify { volume } | Command::Diff { volume } => {
            vec![volume]
        }
        _ => return Ok(()),
    };
    let vols: Vec<VolName> = pending(&ctx.meta)?
        .into_iter()
        .filter(|v| named.is_empty() || named.iter().any(|n| n.as_str() == v.as_str()))
        .collect();
    if vols.is_empty() {
        return Ok(());
    }
    let mut open = ctx.open(true)?;
    for v in &vols {
        log::info!("Completing an interrupted prune of volume {v}…");
        let c = complete(&ctx.meta, &mut open.conn, v)
            .with_context(|| format!("cannot complete the interrupted prune of volume {v}"))?;
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
fn rule(o: &Opts) -> Result<Rule> {
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

pub fn prune(o: &Opts, ctx: &Ctx, vols: &[VolName]) -> Result<Done> {
    let rule = rule(o)?;
    let mut open: Option<Open> = None;
    let mut refused = Vec::new();
    for vol in vols {
        let chain = ctx.meta.chain(vol)?;
        let names: Vec<SessionName> = chain.iter().map(|s| s.name.clone()).collect();
        let sel = match select(&names, &rule) {
            Selection::TooFew => {
                println!("Volume {vol}: no extra sessions to prune.");
                continue;
            }
            Selection::Empty => {
                println!("Volume {vol}: no sessions to prune in this selection.");
                continue;
            }
            Selection::Newest => {
                refused.push(format!(
                    "cannot prune the newest session {} of volume {vol}",
                    names[names.len() - 1].timestamp()
                ));
                continue;
            }
            Selection::Sessions(r) => r,
        };
        let picked = &names[sel.clone()];
        let target = &names[sel.end() + 1];
        if picked.len() > 1
            && !confirm(
                &format!(
                    "Prune {} sessions of volume {vol} ({}) by merging them into {}?",
                    picked.len(),
                    timestamps(picked),
                    target.timestamp()
                ),
                o.unattended,
            )?
        {
            println!("Volume {vol}: prune cancelled.");
            continue;
        }
        if open.is_none() {
            open = Some(ctx.open(true)?);
        }
        let conn = &mut open.as_mut().expect("opened").conn;
        let p = plan(&ctx.meta, vol, &chain, sel)?;
        let c = complete(&ctx.meta, conn, vol)
            .with_context(|| {
            format!("prune of volume {vol} did not finish; the next sparsebak command that uses the archive retries it")
        })?;
        println!(
            "Volume {vol}: pruned {} session(s) ({}) into {}: {} chunk files moved, {} chunks recorded.",
            c.head.pruned.len(),
            timestamps(&c.head.pruned),
            c.head.target.timestamp(),
            p.moves,
            p.chunks
        );
    }
    if let Some(o) = open {
        o.conn.close()?;
    }
    if !refused.is_empty() {
        bail!("{}", refused.join("; "));
    }
    Ok(Done::Ok)
}
