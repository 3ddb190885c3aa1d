//! What `delete` and `arch-delete` remove besides archive data: the LVM
//! snapshots of a volume, and for `arch-delete` everything local.
//!
//! Order for `arch-delete`: the destination first (the step that can fail
//! for reasons outside our control), then snapshots, local metadata, and the
//! configuration last, so an interrupted run can simply be repeated. A
//! destination whose archive is already gone is accepted for that reason.

use super::args::Opts;
use super::Done;
use crate::archive::Ctx;
use crate::config::{Config, SourceSpec, VolumeEntry};
use crate::dest::connect;
use crate::fsutil::fsync_dir;
use crate::lvm::cli::LvmCli;
use crate::lvm::Lvm;
use anyhow::{bail, Context, Result};
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::Request;
use std::io::{BufRead, IsTerminal, Write};

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
pub fn drop_snapshots(config: &Config, vol: &VolName, e: &VolumeEntry) {
    let (None, Some(SourceSpec::Lvm { vg, .. })) = (&e.path, &config.source) else {
        return;
    };
    match remove_snapshots(&LvmCli, vg, vol) {
        Ok(names) => names
            .iter()
            .for_each(|n| println!("Removed snapshot {n}.")),
        Err(e) => log::warn!(
            "cannot remove the snapshots of {vol} ({vg}/{vol}.tick, .tock): {e:#}; remove them with lvremove"
        ),
    }
}

/// Ask for a typed answer at a terminal; -u never skips this question.
fn confirm_typed(question: &str, accepted: &[&str]) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("arch-delete asks for confirmation at a terminal, even with -u, and there is none; nothing was deleted");
    }
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(accepted.contains(&line.trim()))
}

/// Where the configuration is kept after `arch-delete`, for reference.
pub fn kept_config_name(uuid: &str) -> String {
    format!("{}.deleted-{uuid}", crate::config::CONFIG_FILE)
}

pub fn arch_delete(_o: &Opts, ctx: Ctx) -> Result<Done> {
    let uuid = ctx.config.uuid.clone();
    let d = &ctx.config.dest;
    let vols: Vec<&str> = ctx.config.volumes.keys().map(|v| v.as_str()).collect();
    eprintln!(
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
    if !confirm_typed(
        &format!("Type the archive's uuid ({uuid}) or \"yes\" to delete it:"),
        &[&uuid, "yes"],
    )? {
        bail!("arch-delete cancelled; nothing was deleted");
    }
    let mut conn = connect(d, &ctx.transport)?;
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
            conn.ok(&Request::DeleteArchive { uuid: uuid.clone() })?;
            println!("Deleted the archive at {}.", d.describe());
        }
        None => log::warn!(
            "there is no archive at {} (deleted already?); removing the local state only",
            d.describe()
        ),
    }
    conn.close()?;
    for (vol, e) in &ctx.config.volumes {
        drop_snapshots(&ctx.config, vol, e);
    }
    let vdir = ctx.meta.root.join("volumes");
    if vdir.exists() {
        std::fs::remove_dir_all(&vdir)
            .with_context(|| format!("cannot remove {}", vdir.display()))?;
    }
    let cfg = Config::path(&ctx.meta.root);
    let kept = ctx.meta.root.join(kept_config_name(&uuid));
    std::fs::rename(&cfg, &kept).with_context(|| format!("cannot move {} aside", cfg.display()))?;
    fsync_dir(&ctx.meta.root)?;
    println!(
        "Archive {uuid} deleted. Its configuration is kept as {} for reference; \
         `sparsebak arch-init` can create a new archive.",
        kept.display()
    );
    Ok(Done::Ok)
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
