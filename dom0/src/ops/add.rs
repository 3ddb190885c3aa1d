//! `add`: put a volume in the configuration, or confirm the source of a
//! volume rebuilt by arch-recover.

use super::context::Ctx;
use super::resolve::vol_name;
use super::thin;
use crate::config::VolumeEntry;
use anyhow::{bail, Result};
use sparsebak_common::names::VolName;
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    pub volume: String,
    /// The image file or block device holding the volume (absolute).
    pub path: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Added {
    pub vol: VolName,
    /// Where the volume will be read from.
    pub path: PathBuf,
    /// For a volume rebuilt by arch-recover: its session count, and whether
    /// its change map (lost with the metadata) matters, i.e. it is thin or
    /// in a reflink source.
    pub recovered: Option<Recovered>,
}

#[derive(Clone, Debug)]
pub struct Recovered {
    pub sessions: usize,
    pub thin: bool,
}

/// Saves `ctx.config` with the volume added.
pub fn add(ctx: &mut Ctx, o: &AddOptions) -> Result<Added> {
    let vol = vol_name(&o.volume)?;
    // A volume rebuilt by arch-recover is added again to confirm its source.
    let recovered = ctx.config.volumes.get(&vol).is_some_and(|e| e.recovered);
    if ctx.config.volumes.contains_key(&vol) && !recovered {
        bail!("volume {vol} is already in the configuration");
    }
    if let Some(p) = &o.path {
        if !p.is_absolute() {
            bail!("--path {} must be absolute", p.display());
        }
    }
    ctx.config.volumes.insert(
        vol.clone(),
        VolumeEntry {
            enabled: true,
            path: o.path.clone(),
            recovered: false,
            lv: None,
        },
    );
    let path = ctx.config.volume_path(&vol);
    if recovered {
        // Not confirmed until its source is known.
        path.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    }
    ctx.config.save(&ctx.meta.root)?;
    let path = path?;
    let recovered = match recovered {
        false => None,
        true => Some(Recovered {
            sessions: ctx.meta.chain(&vol)?.len(),
            thin: thin::thin_of(ctx, &vol)?.is_some()
                || super::reflink::reflink_of(ctx, &vol)?.is_some(),
        }),
    };
    Ok(Added {
        vol,
        path,
        recovered,
    })
}
