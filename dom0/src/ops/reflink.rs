//! Steps shared by the commands on reflink sources (`--source=reflink:`):
//! which volumes are tracked by reflink copies, a volume's copies and
//! change map, and removing them.

use super::context::Ctx;
use super::{Event, Ui};
use crate::config::{SourceSpec, VolumeEntry};
use crate::reflink::fiemap::Kernel;
use crate::reflink::volume::ReflinkVolume;
use crate::reflink::{snap_dir, SNAP_DIR};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use std::path::Path;

static KERNEL: Kernel = Kernel;

/// The pool directory of a volume tracked by reflink copies, or `None`.
pub fn reflink_of<'c>(ctx: &'c Ctx, vol: &VolName) -> Result<Option<&'c Path>> {
    let e = ctx.config.source_known(vol)?;
    match (&e.path, &ctx.config.source) {
        (None, Some(SourceSpec::Reflink { path })) => Ok(Some(path.as_path())),
        _ => Ok(None),
    }
}

/// The copies and change map of `vol`, an image in the pool `pool`.
pub fn reflink_volume<'a>(
    ctx: &'a Ctx,
    pool: &Path,
    vol: &'a VolName,
) -> Result<ReflinkVolume<'a>> {
    let d = ctx.meta.vol_dir(vol);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(ReflinkVolume {
        fs: &KERNEL,
        vol,
        image: ctx.config.volume_path(vol)?,
        snap_dir: snap_dir(pool, &ctx.config.uuid),
        map_path: d.join("deltamap"),
        cs: ctx.config.chunk_size,
    })
}

/// receive never writes into sparsebak's own copies.
pub fn refuse_copies_as_target(ctx: &Ctx, target: &Path) -> Result<()> {
    let Some(SourceSpec::Reflink { path }) = &ctx.config.source else {
        return Ok(());
    };
    // Resolve symlinks and `..` in the directory (the file may not exist).
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.into());
    let dir = target.parent().map(canon).unwrap_or_default();
    if dir.starts_with(canon(&path.join(SNAP_DIR))) {
        bail!(
            "--save-to {}: not a volume sparsebak may write (it holds sparsebak's reflink copies)",
            target.display()
        );
    }
    Ok(())
}

/// After the latest session was received into `vol`'s own image: the image
/// now equals the archive, so a fresh copy with an empty change map is the
/// baseline, and the next send stores only what changes after this (the
/// restored image's blocks are all new, so comparing them with the old
/// copy would flag every chunk). A failure only costs that: it is a
/// warning.
pub fn received_latest(ctx: &Ctx, vol: &VolName, target: &Path) {
    let Ok(Some(pool)) = reflink_of(ctx, vol) else {
        return;
    };
    let res = (|| -> Result<()> {
        let rv = reflink_volume(ctx, pool, vol)?;
        let same = |p: &Path| p.canonicalize().ok();
        if same(&rv.image).is_none() || same(&rv.image) != same(target) {
            return Ok(());
        }
        rv.fresh_baseline()?;
        Ok(())
    })();
    if let Err(e) = res {
        log::warn!(
            "{vol}: cannot take a new reflink copy of the restored image ({e:#}); the next send \
             stores every chunk of it again"
        );
    }
}

/// For `arch-delete`, after every volume's copies are gone: remove the
/// archive's directory of copies in the pool, `<pool>/.sparsebak/<uuid>`,
/// and `<pool>/.sparsebak` when no other archive keeps copies there. Only
/// empty directories are removed (never recursively): anything left in
/// them stays, with a warning.
pub fn drop_snap_dir(ctx: &Ctx) {
    let Some(SourceSpec::Reflink { path }) = &ctx.config.source else {
        return;
    };
    let dir = snap_dir(path, &ctx.config.uuid);
    for d in [dir.as_path(), &path.join(SNAP_DIR)] {
        match std::fs::remove_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) if d == dir => {
                log::warn!("cannot remove {}: {e}; remove it by hand", d.display());
                return;
            }
            // Another archive's copies are there: it stays.
            Err(_) => return,
        }
    }
    let _ = crate::fsutil::fsync_dir(path);
}

/// For `delete` and `arch-delete`: remove a volume's reflink copies. A
/// failure is reported, not fatal (the archive data is already gone).
pub fn drop_copies(ctx: &Ctx, ui: &dyn Ui, vol: &VolName, e: &VolumeEntry) {
    let (None, Some(SourceSpec::Reflink { path })) = (&e.path, &ctx.config.source) else {
        return;
    };
    let res = reflink_volume(ctx, path, vol).and_then(|rv| rv.remove_copies());
    match res {
        Ok(removed) => removed
            .iter()
            .for_each(|p| ui.event(Event::SnapshotRemoved(&p.display().to_string()))),
        Err(e) => log::warn!(
            "cannot remove the reflink copies of {vol} in {}: {e:#}; remove them by hand",
            snap_dir(path, &ctx.config.uuid).display()
        ),
    }
}
