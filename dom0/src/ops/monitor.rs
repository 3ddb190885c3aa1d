//! `monitor`: harvest LVM thin changes (or a reflink source's, from its
//! copies' extent maps) into each volume's change map and rotate its
//! snapshots (copies). Cheap, so timers run it often.

use super::context::Ctx;
use super::{reflink, thin, Event, Ui};
use crate::lvm::snapshots::Prepared;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use std::path::Path;

#[derive(Clone, Debug, Default)]
pub struct MonitorOptions {
    /// Volume names; none means every enabled volume.
    pub volumes: Vec<String>,
}

/// What monitor found for one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Never sent: there is no baseline to track changes against.
    NotStarted,
    /// `harvested` chunks changed since the last harvest; `pending` are
    /// flagged for the next send.
    Harvested {
        harvested: u64,
        pending: u64,
        resync: bool,
    },
}

pub fn monitor(ctx: &Ctx, ui: &dyn Ui, o: &MonitorOptions) -> Result<()> {
    let vols = super::resolve::select_volumes(ctx, &o.volumes)?;
    let mut any = false;
    let mut checked = false;
    for vol in &vols {
        if ctx.config.volumes.get(vol).is_some_and(|e| e.recovered) {
            log::warn!("volume {vol} was recovered by arch-recover: skipped until `sparsebak add {vol}` confirms its source");
            continue;
        }
        let state = if let Some((vg, pool)) = thin::thin_of(ctx, vol)? {
            if !checked {
                ctx.lvm
                    .check_thin_delta()
                    .with_context(|| format!("monitor of volume {vol}"))?;
                checked = true;
            }
            thin_volume(ctx, vol, vg, pool)?
        } else if let Some(pool) = reflink::reflink_of(ctx, vol)? {
            reflink_volume(ctx, vol, pool)?
        } else {
            continue;
        };
        any = true;
        if let Some(state) = state {
            ui.event(Event::Monitored { vol, state });
        }
    }
    if !any {
        bail!("monitor works on LVM thin volumes and reflink sources, and none is configured (arch-init --source=VG/POOL or --source=reflink:/PATH)");
    }
    Ok(())
}

/// Harvest one thin volume; `None` if it does not exist.
fn thin_volume(ctx: &Ctx, vol: &VolName, vg: &str, pool: &str) -> Result<Option<Tracked>> {
    let tv = thin::thin_volume(ctx, vg, pool, vol)?;
    let has_sessions = !ctx.meta.chain(vol)?.is_empty();
    Ok(Some(
        match tv
            .harvest(has_sessions, false)
            .with_context(|| format!("monitor of volume {vol}"))?
        {
            Prepared::Missing => {
                log::warn!("volume {vol} does not exist in {vg}; skipped");
                return Ok(None);
            }
            Prepared::NotStarted => Tracked::NotStarted,
            Prepared::Incremental {
                map,
                harvested,
                resync,
                ..
            } => Tracked::Harvested {
                harvested,
                pending: map.count(),
                resync,
            },
            Prepared::Full { .. } => unreachable!("monitor never starts a full session"),
        },
    ))
}

/// Harvest one image of a reflink source; `None` if it does not exist.
fn reflink_volume(ctx: &Ctx, vol: &VolName, pool: &Path) -> Result<Option<Tracked>> {
    use crate::reflink::volume::Prepared;
    let rv = reflink::reflink_volume(ctx, pool, vol)?;
    let has_sessions = !ctx.meta.chain(vol)?.is_empty();
    Ok(Some(
        match rv
            .harvest(has_sessions, false)
            .with_context(|| format!("monitor of volume {vol}"))?
        {
            Prepared::Missing => {
                log::warn!(
                    "volume {vol} does not exist at {}; skipped",
                    rv.image.display()
                );
                return Ok(None);
            }
            Prepared::NotStarted => Tracked::NotStarted,
            Prepared::Incremental {
                map,
                harvested,
                resync,
                ..
            } => Tracked::Harvested {
                harvested,
                pending: map.count(),
                resync,
            },
            Prepared::Full { .. } => unreachable!("monitor never starts a full session"),
        },
    ))
}
