//! `add --qube NAME`: put a qube's volumes (and its settings record) in
//! the configuration, found through Qubes' own tools.
//!
//! Archive volume names are made from the qube's uuid
//! (`qube.<uuid>.private`, `.root`, `.settings`), so they stay the same if
//! the qube is renamed or its LV moves; the LV each is read from is
//! recorded beside it and looked up again at every send.

use super::context::Ctx;
use crate::config::{QubeEntry, SourceSpec, VolumeEntry};
use crate::qubes::map::{map_qube, ArchivePool, Mapped, QubeVolume};
use crate::qubes::query::{list_qubes, QubeInfo};
use crate::qubes::{archive_volume, check_qube_name, QvmTools};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use std::path::PathBuf;

#[derive(Clone, Debug, Default)]
pub struct AddQubeOptions {
    pub qube: String,
}

#[derive(Clone, Debug)]
pub struct AddedQube {
    pub name: String,
    pub class: String,
    /// The uuid its archive volumes are named after.
    pub id: String,
    /// Each backed-up volume: Qubes' name (`private`), the archive volume,
    /// the LV it is read from.
    pub volumes: Vec<(String, VolName, String)>,
    /// Why nothing was added (a disposable).
    pub skipped: Option<String>,
}

/// The archive's VG and thin pool, or file-reflink pool directory, or an
/// error: qubes live in one of those.
pub fn archive_pool<'c>(ctx: &'c Ctx) -> Result<ArchivePool<'c>> {
    match &ctx.config.source {
        Some(SourceSpec::Lvm { vg, pool }) => Ok(ArchivePool::Thin { vg, pool }),
        Some(SourceSpec::Reflink { path }) => Ok(ArchivePool::Reflink { dir: path }),
        _ => bail!(
            "qubes are backed up from an LVM thin pool or a file-reflink pool: this archive's \
             --source is neither VG/POOL nor reflink:/PATH (arch-init \
             --source=qubes_dom0/vm-pool, or --source=reflink:/var/lib/qubes)"
        ),
    }
}

/// Where a qube's settings record is staged before it is sent.
pub fn record_path(ctx: &Ctx, id: &str) -> Result<PathBuf> {
    let root = std::fs::canonicalize(&ctx.meta.root)
        .with_context(|| format!("cannot resolve {}", ctx.meta.root.display()))?;
    Ok(root.join("qubes").join(format!("{id}.settings")))
}

pub fn add_qube(ctx: &mut Ctx, qvm: &dyn QvmTools, o: &AddQubeOptions) -> Result<AddedQube> {
    check_qube_name(&o.qube)?;
    archive_pool(ctx)?; // refused before any tool runs
    let q = find(&list_qubes(qvm)?, &o.qube)?;
    if let Some((id, e)) = ctx.config.qubes.iter().find(|(_, e)| e.uuid == q.uuid) {
        let prefix = format!("qube.{id}.");
        // Every archive volume of it deleted: it may be added afresh.
        if ctx
            .config
            .volumes
            .keys()
            .any(|v| v.as_str().starts_with(&prefix))
        {
            bail!(
                "qube {} is already in the configuration (as {}, archive volumes qube.{id}.*)",
                q.name,
                e.name
            );
        }
        let id = id.clone();
        ctx.config.qubes.remove(&id);
    }
    let archive = archive_pool(ctx)?;
    let mut added = AddedQube {
        name: q.name.clone(),
        class: q.class.clone(),
        id: q.uuid.clone(),
        volumes: Vec::new(),
        skipped: None,
    };
    let vols = match map_qube(qvm, &q, archive)? {
        Mapped::Skipped(why) => {
            added.skipped = Some(why);
            return Ok(added);
        }
        Mapped::Volumes(v) => v,
    };
    let settings = record_path(ctx, &q.uuid)?;
    bind_qube(ctx, &q, &q.uuid, &vols, settings)?;
    for v in vols {
        let av = VolName::new(&archive_volume(&q.uuid, &v.volume))?;
        added.volumes.push((v.volume, av, v.lv));
    }
    ctx.config.save(&ctx.meta.root)?;
    Ok(added)
}

/// The qube named `name`.
pub fn find(qubes: &[QubeInfo], name: &str) -> Result<QubeInfo> {
    qubes
        .iter()
        .find(|q| q.name == name)
        .cloned()
        .with_context(|| format!("there is no qube named {name} (qvm-ls lists them)"))
}

/// Record in the configuration that the archive volumes of `id` are read
/// from qube `q`'s LVs (`vols`), and its settings record from `settings`.
/// Volumes rebuilt by arch-recover are confirmed by this. Not saved.
pub fn bind_qube(
    ctx: &mut Ctx,
    q: &QubeInfo,
    id: &str,
    vols: &[QubeVolume],
    settings: PathBuf,
) -> Result<()> {
    for v in vols {
        let av = VolName::new(&archive_volume(id, &v.volume))?;
        ctx.config.volumes.insert(
            av,
            VolumeEntry {
                enabled: true,
                lv: Some(v.lv.clone()),
                ..Default::default()
            },
        );
    }
    if let Some(dir) = settings.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    ctx.config.volumes.insert(
        VolName::new(&archive_volume(id, "settings"))?,
        VolumeEntry {
            enabled: true,
            path: Some(settings),
            ..Default::default()
        },
    );
    ctx.config.qubes.insert(
        id.to_string(),
        QubeEntry {
            name: q.name.clone(),
            uuid: q.uuid.clone(),
            class: q.class.clone(),
            volumes: vols.iter().map(|v| v.volume.clone()).collect(),
        },
    );
    Ok(())
}
