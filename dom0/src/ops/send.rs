//! `send`: back up volumes one after another over one connection. A volume
//! that fails does not keep the others from being backed up: the
//! connection is opened again, and with `--dedup` a link target the agent
//! reports damaged is stepped around by sending that volume again.

use super::context::{Ctx, Open};
use super::resolve::select_volumes;
use super::{dedup, thin, Event, Ui};
use crate::dedup::run::{LinkSource, RunDedup};
use crate::dest::AgentConn;
use crate::lvm::snapshots::Prepared;
use crate::progress::Progress;
use crate::send::{send_volume, SendReport};
use crate::source::file::FileSource;
use crate::source::lvm::LvmSource;
use crate::source::reflink::ReflinkSource;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::Bytes;

#[derive(Clone, Debug, Default)]
pub struct SendOptions {
    /// Volume names; none means every enabled volume.
    pub volumes: Vec<String>,
    /// Store each session as one tar file (docs/FORMAT.md §13).
    pub tarfile: bool,
    /// Store chunks already in the archive as hard links.
    pub dedup: bool,
    /// Forget interrupted sends instead of resuming them (FORMAT.md §19).
    pub no_resume: bool,
}

/// One run of send: the connection (reopened after a failure), the
/// `--dedup` state and the failures so far.
struct Run<'c, 'u> {
    ctx: &'c Ctx<'c>,
    ui: &'u dyn Ui,
    format: sparsebak_common::SessionFormat,
    open: Option<Open>,
    dedup: Option<RunDedup>,
    pb: Box<dyn Progress>,
    failed: Vec<(VolName, anyhow::Error)>,
}

pub fn send(ctx: &Ctx, ui: &dyn Ui, o: &SendOptions) -> Result<()> {
    super::prune::complete_interrupted(ctx, &o.volumes)?;
    let vols = select_volumes(ctx, &o.volumes)?;
    if o.no_resume {
        for v in &vols {
            if crate::send::abandon_resume(&ctx.meta.vol_dir(v))? {
                log::info!("{v}: not resuming its interrupted send (--no-resume)");
            }
        }
    }
    let mut op = ctx.open(true)?;
    ui.event(Event::Sending {
        dest: ctx.config.dest.describe(),
        free: Bytes(op.free_bytes),
    });
    let dedup = match o.dedup {
        true => Some(dedup::prepare_send(ctx, &mut op.conn)?),
        false => None,
    };
    let mut run = Run {
        ctx,
        ui,
        format: if o.tarfile {
            sparsebak_common::SessionFormat::Tar
        } else {
            sparsebak_common::SessionFormat::Folders
        },
        open: Some(op),
        dedup,
        pb: ui.progress(),
        failed: Vec::new(),
    };
    let mut i = 0;
    while let Some(vol) = vols.get(i) {
        if !run.volume(vol, vols.len() > 1) {
            i += 1;
        }
    }
    if let Some(op) = run.open.take() {
        op.conn.close()?;
    }
    let mut failed = run.failed;
    match failed.len() {
        0 => Ok(()),
        1 if vols.len() == 1 => Err(failed.pop().expect("one failure").1),
        n => {
            let names: Vec<String> = failed.iter().map(|(v, _)| v.to_string()).collect();
            bail!(
                "{n} of {} volumes failed to send: {}",
                vols.len(),
                names.join(", ")
            )
        }
    }
}

impl Run<'_, '_> {
    /// Send `vol`; `true` means "send the same volume again" (a damaged
    /// link target is now avoided).
    fn volume(&mut self, vol: &VolName, several: bool) -> bool {
        // A failed send may leave the connection unusable: reconnect, so one
        // bad volume does not keep the others from being backed up.
        let mut op = match self.open.take() {
            Some(op) => op,
            None => match self.ctx.open(true) {
                Ok(op) => op,
                Err(e) => {
                    self.failed.push((vol.clone(), e));
                    return false;
                }
            },
        };
        // Never build on sessions the destination no longer holds.
        let checked = crate::consistency::require(
            &self.ctx.meta,
            &self.ctx.config.uuid,
            &mut op.conn,
            vol,
            false,
            super::WRITE_HINT,
        );
        let res = checked.and_then(|()| {
            send_one(
                self.ctx,
                &mut op.conn,
                vol,
                self.format,
                self.pb.as_ref(),
                self.dedup.as_mut(),
            )
        });
        if let Some(d) = self.dedup.as_mut() {
            d.end_session(matches!(&res, Ok(Some(r)) if r.session.is_some()));
        }
        match res {
            Ok(r) => {
                if r.as_ref().is_some_and(|r| r.session.is_some()) {
                    super::record_state(self.ctx, vol);
                }
                if let Some(r) = &r {
                    self.ui.event(Event::Sent {
                        vol,
                        report: r,
                        dedup: self.dedup.is_some(),
                    });
                }
                self.open = Some(op);
                false
            }
            Err(e) => {
                if self
                    .dedup
                    .as_mut()
                    .is_some_and(|d| dedup::avoid_damaged(d, vol, op.conn.take_damaged()))
                {
                    return true;
                }
                if several {
                    log::error!("{e:#}");
                }
                self.failed.push((vol.clone(), e));
                false
            }
        }
    }
}

/// Send one volume from its source; `None` if it does not exist yet.
fn send_one(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    format: sparsebak_common::SessionFormat,
    pb: &dyn Progress,
    dedup: Option<&mut RunDedup>,
) -> Result<Option<SendReport>> {
    let dedup = dedup.map(|d| d as &mut dyn LinkSource);
    if let Some(thin) = thin::thin_of(ctx, vol)? {
        let r = send_thin(ctx, conn, vol, thin, format, pb, dedup)?;
        if r.is_none() {
            log::warn!("volume {vol} does not exist yet in {}; skipped", thin.0);
        }
        return Ok(r);
    }
    if let Some(pool) = super::reflink::reflink_of(ctx, vol)? {
        return send_reflink(ctx, conn, vol, pool, format, pb, dedup);
    }
    let path = ctx.config.volume_path(vol)?;
    if !path.exists() {
        log::warn!(
            "volume {vol} does not exist yet at {}; skipped",
            path.display()
        );
        return Ok(None);
    }
    let src = FileSource::open(&path).with_context(|| format!("volume {vol}"))?;
    send_volume(ctx, conn, vol, &src, format, pb, dedup).map(Some)
}

/// Send one thin volume from its `.tick` snapshot and change map; `None` if
/// it does not exist yet.
fn send_thin(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    (vg, pool): (&str, &str),
    format: sparsebak_common::SessionFormat,
    pb: &dyn Progress,
    dedup: Option<&mut dyn LinkSource>,
) -> Result<Option<SendReport>> {
    ctx.lvm
        .check_thin_delta()
        .with_context(|| format!("volume {vol}"))?;
    let tv = thin::thin_volume(ctx, vg, pool, vol)?;
    let has_sessions = !ctx.meta.chain(vol)?.is_empty();
    let (tick, map, mapped, full) = match tv
        .harvest(has_sessions, true)
        .with_context(|| format!("volume {vol}"))?
    {
        Prepared::Missing => return Ok(None),
        Prepared::NotStarted => unreachable!("harvest for send"),
        Prepared::Full { tick, map, mapped } => (tick, map, mapped, true),
        Prepared::Incremental {
            tick,
            map,
            mapped,
            resync,
            ..
        } => {
            if resync {
                log::warn!("{vol}: re-reading the whole volume to resynchronise");
            }
            (tick, map, mapped, false)
        }
    };
    let src =
        LvmSource::open(ctx.lvm, vg, &tick.name, (!full).then(|| map.clone()))?.with_mapped(mapped);
    let report = send_volume(ctx, conn, vol, &src, format, pb, dedup)?;
    tv.sent(map)?;
    Ok(Some(report))
}

/// Send one image of a reflink source from its `.tick` copy and change
/// map; `None` if the image does not exist yet.
fn send_reflink(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    pool: &std::path::Path,
    format: sparsebak_common::SessionFormat,
    pb: &dyn Progress,
    dedup: Option<&mut dyn LinkSource>,
) -> Result<Option<SendReport>> {
    use crate::reflink::volume::Prepared;
    let rv = super::reflink::reflink_volume(ctx, pool, vol)?;
    if let Some(note) = crate::reflink::layout::busy_note(&rv.image) {
        log::warn!("volume {vol}: {note}");
    }
    let has_sessions = !ctx.meta.chain(vol)?.is_empty();
    let prepared = rv
        .harvest(has_sessions, true)
        .with_context(|| format!("volume {vol}"))?;
    let (tick, map, full) = match prepared {
        Prepared::Missing => {
            log::warn!(
                "volume {vol} does not exist yet at {}; skipped",
                rv.image.display()
            );
            return Ok(None);
        }
        Prepared::NotStarted => unreachable!("harvest for send"),
        Prepared::Full { tick, map } => (tick, map, true),
        Prepared::Incremental {
            tick, map, resync, ..
        } => {
            if resync {
                log::warn!("{vol}: re-reading the whole image to resynchronise");
            }
            (tick, map, false)
        }
    };
    let src = ReflinkSource::open(&tick, (!full).then(|| map.clone()))
        .with_context(|| format!("volume {vol}"))?;
    let report = send_volume(ctx, conn, vol, &src, format, pb, dedup)?;
    rv.sent(map)?;
    Ok(Some(report))
}
