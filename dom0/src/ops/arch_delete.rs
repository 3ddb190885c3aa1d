//! `arch-delete`: delete the whole archive, local metadata and snapshots.
//!
//! Order: the destination first (the step that can fail for reasons
//! outside our control), then snapshots, local metadata, and the
//! configuration last, so an interrupted run can simply be repeated. A
//! destination whose archive is already gone is accepted for that reason.

use super::context::Ctx;
use super::{thin, Event, Ui};
use crate::config::Config;
use crate::fsutil::fsync_dir;
use anyhow::{bail, Context, Result};
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::proto::Request;
use std::path::PathBuf;

/// Where the configuration is kept after `arch-delete`, for reference.
pub fn kept_config_name(uuid: &str) -> String {
    format!("{}.deleted-{uuid}", crate::config::CONFIG_FILE)
}

/// What is left: the uuid deleted and where its configuration was kept.
pub struct Deleted {
    pub uuid: String,
    pub kept_config: PathBuf,
}

pub fn arch_delete(ctx: &Ctx, ui: &dyn Ui) -> Result<Deleted> {
    let uuid = ctx.config.uuid.clone();
    let d = &ctx.config.dest;
    let vols: Vec<&str> = ctx.config.volumes.keys().map(|v| v.as_str()).collect();
    let warning = format!(
        "This deletes archive {uuid} at {}: every session of every volume ({}), \
         the local metadata in {} and the volumes' snapshots. It cannot be undone.",
        d.describe(),
        if vols.is_empty() {
            "none configured".to_string()
        } else {
            vols.join(", ")
        },
        ctx.meta.root.display()
    );
    if !ui.confirm_typed(
        &warning,
        &format!("Type the archive's uuid ({uuid}) or \"yes\" to delete it:"),
        &[&uuid, "yes"],
    )? {
        bail!("arch-delete cancelled; nothing was deleted");
    }
    delete_on_dest(ctx, ui, &uuid)?;
    for (vol, e) in &ctx.config.volumes {
        thin::drop_snapshots(ctx, ui, vol, e);
        super::reflink::drop_copies(ctx, ui, vol, e);
    }
    super::reflink::drop_snap_dir(ctx);
    let vdir = ctx.meta.root.join("volumes");
    if vdir.exists() {
        std::fs::remove_dir_all(&vdir)
            .with_context(|| format!("cannot remove {}", vdir.display()))?;
    }
    let cfg = Config::path(&ctx.meta.root);
    let kept = ctx.meta.root.join(kept_config_name(&uuid));
    std::fs::rename(&cfg, &kept).with_context(|| format!("cannot move {} aside", cfg.display()))?;
    // The key of data that no longer exists: removed, not kept.
    let key = crate::keyring::key_path(&ctx.meta.root);
    if std::fs::symlink_metadata(&key).is_ok() {
        std::fs::remove_file(&key).with_context(|| format!("cannot remove {}", key.display()))?;
    }
    fsync_dir(&ctx.meta.root)?;
    Ok(Deleted {
        uuid,
        kept_config: kept,
    })
}

/// Delete the archive `uuid` on the destination, if it is still there.
fn delete_on_dest(ctx: &Ctx, ui: &dyn Ui, uuid: &str) -> Result<()> {
    let d = &ctx.config.dest;
    let mut conn = ctx.connector.connect(d)?;
    let opened = conn.open(&d.dest_path(), &d.mountpoint, true)?;
    match opened.header {
        Some(text) => {
            let h = ArchiveHeader::parse(text.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", d.describe()))?;
            if h.uuid != uuid {
                bail!(
                    "the archive at {} has uuid {}, but this configuration belongs to archive {uuid}; \
                     refusing to delete it",
                    d.describe(),
                    h.uuid
                );
            }
            conn.ok(&Request::DeleteArchive {
                uuid: uuid.to_string(),
            })?;
            ui.event(Event::ArchiveDeleted { dest: d.describe() });
        }
        None => log::warn!(
            "there is no archive at {} (deleted already?); removing the local state only",
            d.describe()
        ),
    }
    conn.close()
}
