//! restore-qube in an archive of a Qubes file-reflink pool
//! (`--source=reflink:DIR`): a qube's volume is its committed image
//! `DIR/appvms/NAME/VOL.img` (`vm-templates/NAME/VOL.img` for templates;
//! qubes/storage/reflink.py), written with the checked restore path as
//! `receive` writes a file: sparse (zero chunks are holes), beside the
//! image and renamed over it only when complete, so the image is whole at
//! every moment, old or new.
//!
//! Before that, an existing qube's image is kept as
//! `VOL.img.pre-restore-<UTC time>`, a reflink copy (it shares every block,
//! so it costs no space until the new image differs): not a name Qubes
//! takes for a revision (`VOL.img.N@DATEZ`), so Qubes never prunes it. The
//! report says how to go back. `VOL-precache.img`, the copy Qubes prepared
//! from the old image for the next start, is removed (Qubes makes it again
//! from the new image); an image with a `VOL-dirty.img` beside it belongs
//! to a qube that did not stop cleanly (Qubes would start from the dirty
//! copy and ignore the restore) and is refused. After the newest session of
//! a volume is restored into its own image, a fresh reflink copy is the
//! baseline of the next send, as after `receive` (ops/reflink.rs).

use super::exec::Exec;
use super::{RestoreQubeReport, Target};
use crate::config::SourceSpec;
use crate::output::Output;
use crate::qubes::map::reflink_image;
use crate::reflink::fiemap::{Kernel, ReflinkFs};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::Bytes;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `DIR/x/VOL.img` → `DIR/x/VOL-<what>.img`.
fn beside(image: &Path, what: &str) -> PathBuf {
    let s = image.to_string_lossy();
    PathBuf::from(format!("{}-{what}.img", s.trim_end_matches(".img")))
}

impl Exec<'_, '_> {
    pub(super) fn write_image(
        &mut self,
        to: &Target,
        archive: &VolName,
        session: &SessionName,
        size: u64,
        report: &mut RestoreQubeReport,
    ) -> Result<()> {
        let what = format!("{}:{}", to.qube, to.volume);
        let dir = match &self.ctx.config.source {
            Some(SourceSpec::Reflink { path }) => path.clone(),
            _ => bail!(
                "{what} is in pool {} (driver {}), but this archive backs up an LVM thin pool: \
                 restore-qube writes a qube only into the pool its archive backs up (create it in \
                 that pool with --pool)",
                to.pool.name,
                to.pool.driver
            ),
        };
        if to.pool.driver != "file-reflink" {
            bail!(
                "{what} is in pool {} (driver {}), but this archive backs up the file-reflink pool \
                 {}: restore-qube writes a qube only into that pool (create it there with --pool)",
                to.pool.name,
                to.pool.driver,
                dir.display()
            );
        }
        let rel = reflink_image(&what, to.volume, to.info, to.pool, &dir)?.lv;
        let image = dir.join(&rel);
        let dirty = beside(&image, "dirty");
        if dirty.exists() {
            bail!(
                "{} exists: {} did not stop cleanly, and Qubes would start it from that copy, not \
                 from the restored image: start and shut down the qube (or remove the file), then \
                 restore again",
                dirty.display(),
                to.qube
            );
        }
        if let Some(parent) = image.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let kept = match (to.fresh, image.exists()) {
            (false, true) => Some(self.keep(&image)?),
            _ => None,
        };
        let res = self.restore_into(archive, session, || {
            Output::private_file(&image, Bytes(size))
        });
        if let Err(e) = res {
            if let Some(k) = &kept {
                let _ = std::fs::remove_file(k);
            }
            return Err(e.context(format!("{} is unchanged", image.display())));
        }
        let precache = beside(&image, "precache");
        match std::fs::remove_file(&precache) {
            Ok(()) => log::info!("removed {}, a copy of the image as it was", precache.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => report.warnings.push(format!(
                "cannot remove {} ({e}): remove it before {} starts, or it starts from the old data",
                precache.display(),
                to.qube
            )),
        }
        if let Some(k) = kept {
            report.undo.push(format!(
                "{what}: the image as it was is {} (a reflink copy); to go back: qvm-shutdown \
                 --wait {}; mv {} {}",
                k.display(),
                to.qube,
                k.display(),
                image.display()
            ));
        }
        let chain = self.ctx.meta.chain(archive)?;
        if chain.last().is_some_and(|s| &s.name == session) {
            crate::ops::reflink::received_latest(self.ctx, archive, &image);
        }
        Ok(())
    }

    /// A reflink copy of `image` named `IMAGE.pre-restore-<time>`, made
    /// durable before anything replaces the image.
    fn keep(&self, image: &Path) -> Result<PathBuf> {
        let name = image.file_name().context("an image without a name")?;
        let kept = image.with_file_name(format!(
            "{}.pre-restore-{}",
            name.to_string_lossy(),
            self.stamp
        ));
        let src = File::open(image).with_context(|| format!("cannot open {}", image.display()))?;
        let dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&kept)
            .with_context(|| format!("cannot create {}", kept.display()))?;
        let copied = Kernel
            .clone_file(&src, &dst)
            .with_context(|| {
                format!(
                    "cannot make {} a reflink copy of {} (the pool's file system must share \
                     blocks, as Qubes' file-reflink pools do)",
                    kept.display(),
                    image.display()
                )
            })
            .and_then(|()| dst.sync_all().context("fsync"));
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&kept);
            return Err(e);
        }
        if let Some(dir) = kept.parent() {
            crate::fsutil::fsync_dir(dir)?;
        }
        Ok(kept)
    }
}
