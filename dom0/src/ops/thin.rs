//! Steps shared by the commands on LVM thin volumes: which volumes are
//! thin, their snapshot state machine, a thin LV as a receive target, and
//! removing a volume's snapshots.

use super::context::Ctx;
use super::{Event, Ui};
use crate::config::{SourceSpec, VolumeEntry};
use crate::lvm::snapshots::ThinVolume;
use crate::lvm::Lvm;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::Bytes;
use std::path::{Path, PathBuf};

/// In the metadata directory: a metadata snapshot this archive reserved
/// (see [`crate::lvm::metasnap`]).
pub const METASNAP_MARKER: &str = "metadata-snap-reserved";

/// The VG and pool of a volume read from LVM, or `None` for a file volume.
pub fn thin_of<'c>(ctx: &'c Ctx, vol: &VolName) -> Result<Option<(&'c str, &'c str)>> {
    let e = ctx.config.source_known(vol)?;
    match (&e.path, &ctx.config.source) {
        (None, Some(SourceSpec::Lvm { vg, pool })) => Ok(Some((vg.as_str(), pool.as_str()))),
        _ => Ok(None),
    }
}

pub fn thin_volume<'a>(
    ctx: &'a Ctx,
    vg: &'a str,
    pool: &'a str,
    vol: &'a VolName,
) -> Result<ThinVolume<'a>> {
    let d = ctx.meta.vol_dir(vol);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    let lv = match ctx.config.volumes.get(vol).and_then(|e| e.lv.as_deref()) {
        Some(lv) => lv,
        None => vol.as_str(),
    };
    Ok(ThinVolume {
        lvm: ctx.lvm,
        vg,
        pool,
        vol,
        lv,
        map_path: d.join("deltamap"),
        metasnap_marker: ctx.meta.root.join(METASNAP_MARKER),
        cs: ctx.config.chunk_size,
    })
}

/// For receive into `/dev/VG/LV`: create the thin LV in the configured pool
/// if missing, resize it if needed. Returns the device to write.
pub fn prepare_lv_target(ctx: &Ctx, target: &Path, size: Bytes) -> Result<Option<PathBuf>> {
    let Some(SourceSpec::Lvm { vg, pool }) = &ctx.config.source else {
        return Ok(None);
    };
    let Ok(rest) = target.strip_prefix(Path::new("/dev").join(vg)) else {
        return Ok(None);
    };
    let lv = rest.to_string_lossy().into_owned();
    if lv.is_empty() || lv.contains('/') || lv.ends_with(".tick") || lv.ends_with(".tock") {
        bail!(
            "--save-to {}: not a volume sparsebak may write",
            target.display()
        );
    }
    let lvm = ctx.lvm;
    let s = lvm.survey(vg)?;
    match s.get(&lv) {
        None => {
            lvm.create_thin(vg, pool, &lv, size)?;
            log::info!(
                "created thin volume {vg}/{lv} of {} bytes in pool {pool}",
                size.0
            );
        }
        Some(info) if !info.is_thin_volume() => bail!("{vg}/{lv} is not a thin volume"),
        Some(info) if info.size != size => {
            lvm.resize(vg, &lv, size)?;
            log::info!("resized {vg}/{lv} from {} to {} bytes", info.size.0, size.0);
        }
        Some(_) => {}
    }
    Ok(Some(lvm.device_path(vg, &lv)))
}

/// Remove `<vol>.tick` and `<vol>.tock` from `vg` if they exist; returns
/// the names removed.
pub fn remove_snapshots(lvm: &dyn Lvm, vg: &str, vol: &VolName) -> Result<Vec<String>> {
    let s = lvm.survey(vg)?;
    let mut removed = Vec::new();
    for name in [format!("{vol}.tick"), format!("{vol}.tock")] {
        if s.contains_key(&name) {
            lvm.remove(vg, &name)?;
            removed.push(format!("{vg}/{name}"));
        }
    }
    Ok(removed)
}

/// For `delete` and `arch-delete`: remove a volume's snapshots if it is
/// read from LVM. A failure is reported, not fatal: the archive data is
/// already gone, and the snapshots can be removed by hand.
pub fn drop_snapshots(ctx: &Ctx, ui: &dyn Ui, vol: &VolName, e: &VolumeEntry) {
    let (None, Some(SourceSpec::Lvm { vg, .. })) = (&e.path, &ctx.config.source) else {
        return;
    };
    match remove_snapshots(ctx.lvm, vg, vol) {
        Ok(names) => names
            .iter()
            .for_each(|n| ui.event(Event::SnapshotRemoved(n))),
        Err(e) => log::warn!(
            "cannot remove the snapshots of {vol} ({vg}/{vol}.tick, .tock): {e:#}; remove them with lvremove"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::fake::FakeLvm;

    #[test]
    fn removes_only_this_volumes_snapshots() {
        let lvm = FakeLvm::new();
        for n in ["vm-a", "vm-a.tick", "vm-a.tock", "vm-ab.tick", "vm-b.tick"] {
            lvm.add_volume(n, vec![0; 4096]);
        }
        let vol = VolName::new("vm-a").unwrap();
        let removed = remove_snapshots(&lvm, "vg", &vol).unwrap();
        assert_eq!(removed, ["vg/vm-a.tick", "vg/vm-a.tock"]);
        let left: Vec<String> = lvm.survey("vg").unwrap().into_keys().collect();
        assert_eq!(left, ["pool", "vm-a", "vm-ab.tick", "vm-b.tick"]);
        assert!(remove_snapshots(&lvm, "vg", &vol).unwrap().is_empty());
    }
}
