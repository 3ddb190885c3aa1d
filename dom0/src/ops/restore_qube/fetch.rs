//! Which qubes a restore is about, and their settings records as of the
//! chosen time, fetched through the checked restore path into memory and
//! validated (docs/FORMAT.md §16.3).

use super::RestoreQubeOptions;
use crate::consistency::require;
use crate::dest::AgentConn;
use crate::ops::context::Ctx;
use crate::ops::resolve::one_session;
use crate::ops::READ_HINT;
use crate::progress::Silent;
use crate::qubes::query::QubeInfo;
use crate::qubes::record::{QubeRecord, MAX_RECORD};
use crate::qubes::{archive_volume, check_qube_name, split_archive_volume};
use crate::restore::{restore, Sink};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::ByteOffset;
use std::sync::Mutex;

/// A qube to restore: the uuid its archive volumes are named after, and
/// its record.
#[derive(Clone)]
pub struct Found {
    pub id: String,
    pub session: SessionName,
    pub record: QubeRecord,
    /// What the report should say about it (a data session pruned since).
    pub notes: Vec<String>,
}

/// The records the options select, and the templates they need that do
/// not exist but are in the archive.
pub fn records(ctx: &Ctx, o: &RestoreQubeOptions, existing: &[QubeInfo]) -> Result<Vec<Found>> {
    if o.all != o.qubes.is_empty() {
        bail!("name the qubes to restore, or give --all (not both)");
    }
    if o.as_name.is_some() && (o.all || o.qubes.len() != 1) {
        bail!("--as renames one qube: name exactly one");
    }
    for n in &o.qubes {
        check_qube_name(n)?;
    }
    let at = one_session(o.session.as_deref(), "restore-qube")?;
    let all: Vec<String> = ctx
        .config
        .volumes
        .keys()
        .filter_map(|v| match split_archive_volume(v.as_str()) {
            Some((id, "settings")) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    if all.is_empty() {
        bail!("the archive holds no qube settings records (add qubes with `sparsebak add --qube NAME` and send)");
    }
    // Names the configuration knows need only their records.
    let known: Vec<String> = o
        .qubes
        .iter()
        .filter_map(|n| ctx.config.qubes.iter().find(|(_, q)| &q.name == n))
        .map(|(id, _)| id.clone())
        .collect();
    let first = match !o.all && known.len() == o.qubes.len() {
        true => known,
        false => all.clone(),
    };
    let mut conn = ctx.open(false)?.conn;
    let allow = o.allow_inconsistent;
    let (mut found, mut broken) = fetch_all(ctx, &mut conn, &first, at.as_ref(), allow);
    let mut out = select(&found, &broken, o)?;
    let missing: Vec<String> = out
        .iter()
        .filter_map(|f| f.record.template.clone())
        .filter(|t| {
            !existing.iter().any(|q| &q.name == t) && !out.iter().any(|f| &f.record.name == t)
        })
        .collect();
    if !missing.is_empty() && first.len() < all.len() {
        let rest: Vec<String> = all.into_iter().filter(|i| !first.contains(i)).collect();
        let (f, b) = fetch_all(ctx, &mut conn, &rest, at.as_ref(), allow);
        found.extend(f);
        broken.extend(b);
    }
    for t in missing {
        if let Some(f) = found.iter().find(|f| f.record.name == t) {
            if !out.iter().any(|o| o.id == f.id) {
                out.push(f.clone());
            }
        }
    }
    // The data too must be what dom0 sent (docs/FORMAT.md §17), before
    // anything changes.
    for f in &mut out {
        pruned_since(ctx, f)?;
        for v in &f.record.volumes {
            let vol = VolName::new(&v.archive)?;
            ctx.config.volume(&vol)?;
            require(
                &ctx.meta,
                &ctx.config.uuid,
                &mut conn,
                &vol,
                allow,
                READ_HINT,
            )
            .with_context(|| format!("qube {}", f.record.name))?;
        }
    }
    conn.close()?;
    Ok(out)
}

fn fetch_all(
    ctx: &Ctx,
    conn: &mut AgentConn,
    ids: &[String],
    at: Option<&SessionName>,
    allow: bool,
) -> (Vec<Found>, Vec<String>) {
    let (mut found, mut broken) = (Vec::new(), Vec::new());
    for id in ids {
        match fetch(ctx, conn, id, at, allow) {
            Ok(Some(f)) => found.push(f),
            Ok(None) => {
                log::warn!("qube {id} has no settings record at or before the time asked; skipped")
            }
            Err(e) => broken.push(format!("{e:#}")),
        }
    }
    (found, broken)
}

fn select(found: &[Found], broken: &[String], o: &RestoreQubeOptions) -> Result<Vec<Found>> {
    if o.all {
        if !broken.is_empty() {
            bail!(
                "nothing restored: {} (restore the other qubes by name)",
                broken.join("; ")
            );
        }
        return Ok(found.to_vec());
    }
    let mut out = Vec::new();
    for n in &o.qubes {
        let Some(f) = found.iter().find(|f| &f.record.name == n) else {
            let also = match broken.is_empty() {
                true => String::new(),
                false => format!("; records that could not be read: {}", broken.join("; ")),
            };
            bail!("no qube named {n} in the archive (`sparsebak list` shows the qubes){also}");
        };
        out.push(f.clone());
    }
    Ok(out)
}

/// A data session the record names may have been pruned since: prune
/// merged it into the next newer session, which is then the oldest state
/// left to restore (with a note). None newer: refused.
fn pruned_since(ctx: &Ctx, f: &mut Found) -> Result<()> {
    for v in &mut f.record.volumes {
        let vol = VolName::new(&v.archive)?;
        let chain = ctx.meta.chain(&vol)?;
        if chain.iter().any(|s| s.name.as_str() == v.session) {
            continue;
        }
        let Some(next) = chain.iter().find(|s| s.name.as_str() > v.session.as_str()) else {
            bail!(
                "qube {}: session {} of {} named by its settings record is not in the archive",
                f.record.name,
                v.session,
                v.archive
            );
        };
        f.notes.push(format!(
            "qube {}: {} session {} was pruned since; restoring the next newer one, {}",
            f.record.name,
            v.volume,
            v.session.trim_start_matches("S_"),
            next.name.timestamp()
        ));
        v.session = next.name.to_string();
        v.size = next.volsize.0;
    }
    Ok(())
}

/// The record of qube `id` as of `at` (its newest session at or before),
/// or `None` if it has none that old.
fn fetch(
    ctx: &Ctx,
    conn: &mut AgentConn,
    id: &str,
    at: Option<&SessionName>,
    allow: bool,
) -> Result<Option<Found>> {
    let vol = VolName::new(&archive_volume(id, "settings"))?;
    require(&ctx.meta, &ctx.config.uuid, conn, &vol, allow, READ_HINT)?;
    let chain = ctx.meta.chain(&vol)?;
    let Some(info) = chain
        .iter()
        .rev()
        .find(|s| at.is_none_or(|a| s.name.as_str() <= a.as_str()))
    else {
        return Ok(None);
    };
    let what = format!("settings record {vol} session {}", info.name);
    if info.volsize.0 > MAX_RECORD {
        bail!(
            "{what} is {} bytes, more than {MAX_RECORD}: refused",
            info.volsize.0
        );
    }
    let sink = MemSink(Mutex::new(vec![0; info.volsize.0 as usize]));
    restore(ctx, conn, &vol, Some(&info.name), Some(&sink), &Silent)
        .with_context(|| format!("cannot read {what}"))?;
    let bytes = sink.0.into_inner().expect("no poisoned lock");
    let record = QubeRecord::parse(&bytes).with_context(|| what.clone())?;
    if record.uuid != id {
        bail!("{what} names uuid {}, not {id}: refused", record.uuid);
    }
    Ok(Some(Found {
        id: id.into(),
        session: info.name.clone(),
        record,
        notes: Vec::new(),
    }))
}

/// A restore target in memory, for records (at most [`MAX_RECORD`]).
struct MemSink(Mutex<Vec<u8>>);

impl Sink for MemSink {
    fn data(&self, addr: ByteOffset, bytes: &[u8]) -> Result<()> {
        let mut v = self.0.lock().expect("no poisoned lock");
        let start = addr.0 as usize;
        let Some(dst) = v.get_mut(start..start + bytes.len()) else {
            bail!("chunk at {addr} lies beyond the record");
        };
        dst.copy_from_slice(bytes);
        Ok(())
    }
    fn zero(&self, _addr: ByteOffset, _len: u64) -> Result<()> {
        Ok(())
    }
}
