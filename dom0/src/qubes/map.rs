//! Which volumes of a qube are backed up, and when a qube is refused.
//!
//! Every qube's `private`; also `root` for TemplateVM and StandaloneVM
//! (an AppVM's root is a snapshot of its template's, recreated at each
//! start). Never `volatile` or `kernel`. Named disposables (DispVM) are
//! skipped: nothing in them is meant to outlive them.

use super::query::{self, PoolInfo, QubeInfo, VolumeInfo};
use super::QvmTools;
use anyhow::{bail, Result};

/// The archive's thin pool.
#[derive(Clone, Copy, Debug)]
pub struct ArchivePool<'a> {
    pub vg: &'a str,
    pub pool: &'a str,
}

/// One volume of a qube to back up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QubeVolume {
    /// `private` or `root`.
    pub volume: String,
    /// Its LV in the archive's VG (from the volume's `vid`).
    pub lv: String,
    pub size: u64,
}

/// What `add --qube` and `send` make of a qube.
#[derive(Debug)]
pub enum Mapped {
    Volumes(Vec<QubeVolume>),
    /// A named disposable: skipped, with the reason.
    Skipped(String),
}

/// The volume names backed up for a class.
pub fn volumes_of(class: &str) -> &'static [&'static str] {
    match class {
        "TemplateVM" | "StandaloneVM" => &["private", "root"],
        _ => &["private"],
    }
}

/// Look a qube's volumes up with Qubes' tools and check each lives where
/// the archive can read it consistently.
pub fn map_qube(qvm: &dyn QvmTools, q: &QubeInfo, archive: ArchivePool) -> Result<Mapped> {
    match q.class.as_str() {
        "DispVM" => {
            return Ok(Mapped::Skipped(format!(
                "{} is a disposable (DispVM): its data does not outlive it, so it is not backed up",
                q.name
            )))
        }
        "AppVM" | "TemplateVM" | "StandaloneVM" => {}
        c => bail!(
            "qube {} is a {c}; sparsebak backs up AppVM, TemplateVM and StandaloneVM qubes",
            q.name
        ),
    }
    let mut out = Vec::new();
    for v in volumes_of(&q.class) {
        let info = query::volume_info(qvm, &q.name, v)?;
        let pool = query::pool_info(qvm, &info.pool)?;
        out.push(check_volume(q, v, &info, &pool, archive)?);
    }
    Ok(Mapped::Volumes(out))
}

/// The checks of [`map_qube`] for one volume, on what the tools said.
pub fn check_volume(
    q: &QubeInfo,
    volume: &str,
    info: &VolumeInfo,
    pool: &PoolInfo,
    archive: ArchivePool,
) -> Result<QubeVolume> {
    let what = format!("{}:{volume}", q.name);
    match pool.driver.as_str() {
        "lvm_thin" => {}
        "file-reflink" => bail!(
            "{what} is in pool {} (driver file-reflink): sparsebak reads LVM thin volumes through \
             the pool's change records, which a file-reflink pool does not have; back that qube \
             up with qvm-backup, or move it to the LVM thin pool {}/{} (qvm-clone -P POOL)",
            pool.name,
            archive.vg,
            archive.pool
        ),
        d => bail!(
            "{what} is in pool {} (driver {d}); sparsebak backs up LVM thin pools only",
            pool.name
        ),
    }
    if pool.volume_group.as_deref() != Some(archive.vg)
        || pool.thin_pool.as_deref() != Some(archive.pool)
    {
        bail!(
            "{what} is in pool {} ({}/{}), but this archive backs up {}/{}: make an archive for \
             that pool (arch-init --source=VG/POOL with its own --meta-dir), or move the qube \
             (qvm-clone -P POOL)",
            pool.name,
            pool.volume_group.as_deref().unwrap_or("?"),
            pool.thin_pool.as_deref().unwrap_or("?"),
            archive.vg,
            archive.pool
        );
    }
    let lv = match info.vid.split_once('/') {
        Some((vg, lv)) if vg == archive.vg && is_lv_name(lv) => lv.to_string(),
        _ => bail!("{what} has volume id {:?}, not {}/LV", info.vid, archive.vg),
    };
    let snapshots_disabled =
        info.revisions_to_keep == -1 && !info.snap_on_start && info.save_on_stop;
    if snapshots_disabled && !q.halted() {
        bail!(
            "{what} has snapshots disabled (revisions_to_keep -1), so while {} runs it writes \
             straight into {lv} and no consistent copy exists: shut it down (qvm-shutdown --wait {}) \
             and send again, or enable snapshots (qvm-volume config {what} revisions_to_keep 1)",
            q.name,
            q.name
        );
    }
    Ok(QubeVolume {
        volume: volume.into(),
        lv,
        size: info.size,
    })
}

fn is_lv_name(lv: &str) -> bool {
    !lv.is_empty()
        && lv.len() <= 127
        && !lv.starts_with('-')
        && lv
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qube(class: &str, state: &str) -> QubeInfo {
        QubeInfo {
            name: "work".into(),
            class: class.into(),
            state: state.into(),
            uuid: "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70".into(),
            template: None,
        }
    }
    fn vol(rev: i64, snap: bool, save: bool) -> VolumeInfo {
        VolumeInfo {
            pool: "vm-pool".into(),
            vid: "qubes_dom0/vm-work-private".into(),
            save_on_stop: save,
            snap_on_start: snap,
            revisions_to_keep: rev,
            size: 1 << 30,
        }
    }
    fn pool(driver: &str, vg: &str, tp: &str) -> PoolInfo {
        PoolInfo {
            name: "vm-pool".into(),
            driver: driver.into(),
            volume_group: Some(vg.into()),
            thin_pool: Some(tp.into()),
        }
    }
    const A: ArchivePool = ArchivePool {
        vg: "qubes_dom0",
        pool: "vm-pool",
    };

    #[test]
    fn volumes_by_class() {
        assert_eq!(volumes_of("AppVM"), ["private"]);
        assert_eq!(volumes_of("TemplateVM"), ["private", "root"]);
        assert_eq!(volumes_of("StandaloneVM"), ["private", "root"]);
    }

    #[test]
    fn refusals_say_why_and_what_to_do() {
        let q = qube("AppVM", "Running");
        let ok = check_volume(
            &q,
            "private",
            &vol(2, false, true),
            &pool("lvm_thin", "qubes_dom0", "vm-pool"),
            A,
        )
        .unwrap();
        assert_eq!(ok.lv, "vm-work-private");
        let e = |v: &VolumeInfo, p: &PoolInfo, q: &QubeInfo| {
            format!("{:#}", check_volume(q, "private", v, p, A).unwrap_err())
        };
        let m = e(&vol(2, false, true), &pool("file-reflink", "", ""), &q);
        assert!(
            m.contains("file-reflink") && m.contains("qvm-backup"),
            "{m}"
        );
        let m = e(
            &vol(2, false, true),
            &pool("lvm_thin", "qubes_dom0", "other"),
            &q,
        );
        assert!(
            m.contains("qubes_dom0/other") && m.contains("arch-init"),
            "{m}"
        );
        let m = e(
            &vol(-1, false, true),
            &pool("lvm_thin", "qubes_dom0", "vm-pool"),
            &q,
        );
        assert!(
            m.contains("snapshots disabled") && m.contains("qvm-shutdown --wait work"),
            "{m}"
        );
        // The same volume is fine while the qube is halted.
        check_volume(
            &qube("AppVM", "Halted"),
            "private",
            &vol(-1, false, true),
            &pool("lvm_thin", "qubes_dom0", "vm-pool"),
            A,
        )
        .unwrap();
        let mut bad = vol(2, false, true);
        bad.vid = "other_vg/vm-work-private".into();
        assert!(e(&bad, &pool("lvm_thin", "qubes_dom0", "vm-pool"), &q).contains("volume id"));
    }
}
