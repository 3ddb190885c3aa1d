//! `monitor`: harvest LVM thin changes into each volume's change map and
//! rotate its snapshots. Cheap, so timers run it often.

use super::context::Ctx;
use super::{thin, Event, Ui};
use crate::lvm::snapshots::Prepared;
use anyhow::{bail, Context, Result};

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
    for vol in &vols {
        if ctx.config.volumes.get(vol).is_some_and(|e| e.recovered) {
            log::warn!("volume {vol} was recovered by arch-recover: skipped until `sparsebak add {vol}` confirms its source");
            continue;
        }
        let Some((vg, pool)) = thin::thin_of(ctx, vol)? else {
            continue;
        };
        if !any {
            ctx.lvm
                .check_thin_delta()
                .with_context(|| format!("monitor of volume {vol}"))?;
            any = true;
        }
        let tv = thin::thin_volume(ctx, vg, pool, vol)?;
        let has_sessions = !ctx.meta.chain(vol)?.is_empty();
        let state = match tv
            .harvest(has_sessions, false)
            .with_context(|| format!("monitor of volume {vol}"))?
        {
            Prepared::Missing => {
                log::warn!("volume {vol} does not exist in {vg}; skipped");
                continue;
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
        };
        ui.event(Event::Monitored { vol, state });
    }
    if !any {
        bail!("monitor works on LVM thin volumes, and none is configured (arch-init --source=VG/POOL)");
    }
    Ok(())
}
