//! `send` when qubes are configured: each qube is looked up again (by its
//! uuid, so a rename is followed), checked (it may have moved to another
//! pool or had its snapshots disabled while running), its volumes sent,
//! and then its settings record written and sent as the archive volume
//! `qube.<uuid>.settings`, naming the data sessions it goes with
//! (docs/FORMAT.md §16). A qube whose data did not all reach the archive
//! gets no new record, so every record names sessions that exist.

use super::context::Ctx;
use super::qube_add::{archive_pool, bind_qube, record_path};
use super::send::SendOptions;
use super::{Event, Ui};
use crate::fsutil::write_atomic;
use crate::progress::Progress;
use crate::qubes::export::export;
use crate::qubes::map::{map_qube, Mapped};
use crate::qubes::query::{list_qubes, QubeInfo};
use crate::qubes::record::{QubeRecord, RecordVolume};
use crate::qubes::{archive_volume, split_archive_volume, QvmTools};
use anyhow::{anyhow, bail, Result};
use sparsebak_common::names::VolName;
use std::cell::RefCell;

/// Send the named qubes and volumes, or every configured one.
pub fn send(ctx: &mut Ctx, qvm: &dyn QvmTools, ui: &dyn Ui, o: &SendOptions) -> Result<()> {
    if ctx.config.qubes.is_empty() {
        return super::send::send(ctx, ui, o);
    }
    let qubes = list_qubes(qvm)?;
    let (ids, mut others) = select(ctx, &qubes, &o.volumes);
    let mut failed: Vec<String> = Vec::new();
    let mut records = Vec::new();
    if !ids.is_empty() {
        for id in &ids {
            match prepare(ctx, qvm, &qubes, id) {
                Ok(Some(r)) => records.push(r),
                Ok(None) => {}
                Err(e) => {
                    log::error!("{e:#}");
                    failed.push(ctx.config.qubes[id].name.clone());
                }
            }
        }
        ctx.config.save(&ctx.meta.root)?;
    }
    for r in &records {
        for v in crate::qubes::map::volumes_of(&r.class) {
            others.push(archive_volume(&r.uuid, v));
        }
    }
    let rec = Recorder {
        inner: ui,
        sent: RefCell::new(Vec::new()),
    };
    let data = match others.is_empty() {
        true => Ok(()),
        false => super::send::send(ctx, &rec, &with_volumes(o, others)),
    };
    let settings = write_records(ctx, &mut records, &rec.sent.borrow())?;
    let stored = match settings.is_empty() {
        true => Ok(()),
        false => super::send::send(ctx, ui, &with_volumes(o, settings)),
    };
    match (data, stored, failed.is_empty()) {
        (Ok(()), Ok(()), true) => Ok(()),
        (d, s, _) => {
            let mut why: Vec<String> = [d.err(), s.err()]
                .into_iter()
                .flatten()
                .map(|e| format!("{e:#}"))
                .collect();
            if !failed.is_empty() {
                why.push(format!("qubes not sent: {}", failed.join(", ")));
            }
            Err(anyhow!("{}", why.join("; ")))
        }
    }
}

fn with_volumes(o: &SendOptions, volumes: Vec<String>) -> SendOptions {
    SendOptions {
        volumes,
        ..o.clone()
    }
}

/// The qubes (by archive id) and the other volumes a send works on. A
/// name is a configured qube's, as configured or as Qubes calls it now
/// (renamed since the last send).
fn select(ctx: &Ctx, qubes: &[QubeInfo], names: &[String]) -> (Vec<String>, Vec<String>) {
    let by_name = |n: &str| {
        let now = qubes.iter().find(|q| q.name == n).map(|q| q.uuid.as_str());
        ctx.config
            .qubes
            .iter()
            .find(|(_, e)| Some(e.uuid.as_str()) == now)
            .or_else(|| ctx.config.qubes.iter().find(|(_, e)| e.name == n))
            .map(|(id, _)| id.clone())
    };
    if names.is_empty() {
        let ids = ctx.config.qubes.keys().cloned().collect();
        let others = ctx
            .config
            .volumes
            .iter()
            .filter(|(v, e)| {
                e.enabled
                    && split_archive_volume(v.as_str())
                        .is_none_or(|(id, _)| !ctx.config.qubes.contains_key(id))
            })
            .map(|(v, _)| v.to_string())
            .collect();
        return (ids, others);
    }
    let mut ids = Vec::new();
    let mut others = Vec::new();
    for n in names {
        match by_name(n) {
            Some(id) => ids.push(id),
            None => others.push(n.clone()),
        }
    }
    (ids, others)
}

/// Look qube `id` up again, check it, point its volumes at its LVs and
/// export its settings. `None`: it no longer exists (skipped, warned).
fn prepare(
    ctx: &mut Ctx,
    qvm: &dyn QvmTools,
    qubes: &[QubeInfo],
    id: &str,
) -> Result<Option<QubeRecord>> {
    let entry = ctx.config.qubes[id].clone();
    let deleted: Vec<String> = entry
        .volumes
        .iter()
        .map(String::as_str)
        .chain(["settings"])
        .map(|v| archive_volume(id, v))
        .filter(|v| !ctx.config.volumes.keys().any(|k| k.as_str() == v))
        .collect();
    if !deleted.is_empty() {
        log::warn!(
            "qube {}: {} deleted from the archive, so it is not sent (to back it up again: \
             sparsebak delete its other volumes, then add --qube {})",
            entry.name,
            deleted.join(", "),
            entry.name
        );
        return Ok(None);
    }
    let Some(q) = qubes.iter().find(|q| q.uuid == entry.uuid) else {
        log::warn!(
            "qube {} (uuid {}) does not exist any more; skipped (its sessions stay in the archive)",
            entry.name,
            entry.uuid
        );
        return Ok(None);
    };
    if q.name != entry.name {
        log::info!("qube {} is now called {}", entry.name, q.name);
    }
    let vols = match map_qube(qvm, q, archive_pool(ctx)?)? {
        Mapped::Volumes(v) => v,
        Mapped::Skipped(why) => {
            log::warn!("{why}; skipped");
            return Ok(None);
        }
    };
    let record = export(qvm, q, id)?;
    let path = record_path(ctx, id)?;
    bind_qube(ctx, q, id, &vols, path)?;
    Ok(Some(record))
}

/// Fill in each record whose data volumes were all sent and write it to
/// its staging file; returns the settings volumes to send.
fn write_records(ctx: &Ctx, records: &mut [QubeRecord], sent: &[VolName]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for r in records.iter_mut() {
        let vols: Vec<&str> = crate::qubes::map::volumes_of(&r.class).to_vec();
        let names: Vec<String> = vols.iter().map(|v| archive_volume(&r.uuid, v)).collect();
        if !names.iter().all(|n| sent.iter().any(|s| s.as_str() == n)) {
            log::warn!(
                "qube {}: not all its volumes were sent, so its settings record is not updated",
                r.name
            );
            continue;
        }
        for (v, n) in vols.iter().zip(&names) {
            let vol = VolName::new(n)?;
            let chain = ctx.meta.chain(&vol)?;
            let Some(last) = chain.last() else {
                bail!(
                    "volume {n} of qube {} has no session after its send",
                    r.name
                );
            };
            r.volumes.push(RecordVolume {
                volume: v.to_string(),
                archive: n.clone(),
                session: last.name.to_string(),
                size: last.volsize.0,
            });
        }
        write_atomic(&record_path(ctx, &r.uuid)?, &r.encode()?)?;
        out.push(archive_volume(&r.uuid, "settings"));
    }
    Ok(out)
}

/// Passes everything on and notes which volumes were sent (a session
/// stored, or no changes).
struct Recorder<'u> {
    inner: &'u dyn Ui,
    sent: RefCell<Vec<VolName>>,
}

impl Ui for Recorder<'_> {
    fn confirm(&self, q: &str) -> Result<bool> {
        self.inner.confirm(q)
    }
    fn confirm_typed(&self, w: &str, q: &str, a: &[&str]) -> Result<bool> {
        self.inner.confirm_typed(w, q, a)
    }
    fn progress(&self) -> Box<dyn Progress> {
        self.inner.progress()
    }
    fn event(&self, e: Event<'_>) {
        if let Event::Sent { vol, .. } = &e {
            self.sent.borrow_mut().push((*vol).clone());
        }
        self.inner.event(e)
    }
}
