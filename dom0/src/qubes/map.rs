//! Which volumes of a qube are backed up, and when a qube is refused.
//!
//! Every qube's `private`; also `root` for TemplateVM and StandaloneVM
//! (an AppVM's root is a snapshot of its template's, recreated at each
//! start). Never `volatile` or `kernel`. Named disposables (DispVM) are
//! skipped: nothing in them is meant to outlive them.

use super::query::{self, PoolInfo, QubeInfo, VolumeInfo};
use super::QvmTools;
use anyhow::{bail, Result};
use std::path::Path;

/// The pool the archive backs up: an LVM thin pool, or a Qubes
/// file-reflink pool's directory (`--source=reflink:`, crate::reflink).
#[derive(Clone, Copy, Debug)]
pub enum ArchivePool<'a> {
    Thin { vg: &'a str, pool: &'a str },
    Reflink { dir: &'a Path },
}

/// One volume of a qube to back up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QubeVolume {
    /// `private` or `root`.
    pub volume: String,
    /// Its LV in the archive's VG (from the volume's `vid`); in a
    /// file-reflink pool, its image relative to the pool directory
    /// (`appvms/NAME/private.img`).
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
    let (vg, tp) = match (pool.driver.as_str(), archive) {
        ("lvm_thin", ArchivePool::Thin { vg, pool }) => (vg, pool),
        ("file-reflink", ArchivePool::Reflink { dir }) => {
            return reflink_image(&what, volume, info, pool, dir)
        }
        ("file-reflink", ArchivePool::Thin { vg, pool: tp }) => bail!(
            "{what} is in pool {} (driver file-reflink), but this archive backs up the LVM thin \
             pool {vg}/{tp}: make an archive for that pool (arch-init \
             --source=reflink:{} with its own --meta-dir), or move the qube (qvm-clone -P POOL)",
            pool.name,
            pool.dir_path.as_deref().unwrap_or("/var/lib/qubes")
        ),
        ("lvm_thin", ArchivePool::Reflink { dir }) => bail!(
            "{what} is in pool {} (LVM thin, {}/{}), but this archive backs up the file-reflink \
             pool {}: make an archive for that pool (arch-init --source=VG/POOL with its own \
             --meta-dir), or move the qube (qvm-clone -P POOL)",
            pool.name,
            pool.volume_group.as_deref().unwrap_or("?"),
            pool.thin_pool.as_deref().unwrap_or("?"),
            dir.display()
        ),
        (d, _) => bail!(
            "{what} is in pool {} (driver {d}); sparsebak backs up LVM thin and file-reflink \
             pools only",
            pool.name
        ),
    };
    if pool.volume_group.as_deref() != Some(vg) || pool.thin_pool.as_deref() != Some(tp) {
        bail!(
            "{what} is in pool {} ({}/{}), but this archive backs up {vg}/{tp}: make an archive for \
             that pool (arch-init --source=VG/POOL with its own --meta-dir), or move the qube \
             (qvm-clone -P POOL)",
            pool.name,
            pool.volume_group.as_deref().unwrap_or("?"),
            pool.thin_pool.as_deref().unwrap_or("?"),
        );
    }
    let lv = match info.vid.split_once('/') {
        Some((v, lv)) if v == vg && is_lv_name(lv) => lv.to_string(),
        _ => bail!("{what} has volume id {:?}, not {vg}/LV", info.vid),
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

/// A volume of a file-reflink pool: the pool must be the archive's
/// directory, and its vid `appvms/NAME/VOL` or `vm-templates/NAME/VOL`
/// (qubes/storage/reflink.py `init_volume`), whose committed image is
/// `VID.img`. A running qube writes a `-dirty.img` copy, so the image is
/// always consistent: no snapshot setting to check.
pub fn reflink_image(
    what: &str,
    volume: &str,
    info: &VolumeInfo,
    pool: &PoolInfo,
    dir: &Path,
) -> Result<QubeVolume> {
    let at = pool.dir_path.as_deref().map(Path::new);
    if at.map(|p| p.components().eq(dir.components())) != Some(true) {
        bail!(
            "{what} is in the file-reflink pool {} at {}, but this archive backs up {}: make an \
             archive for that pool (arch-init --source=reflink:DIR with its own --meta-dir), or \
             move the qube (qvm-clone -P POOL)",
            pool.name,
            pool.dir_path.as_deref().unwrap_or("?"),
            dir.display()
        );
    }
    let parts: Vec<&str> = info.vid.split('/').collect();
    let ok = matches!(parts.as_slice(), [prefix, name, v]
        if [crate::reflink::layout::APPVMS, crate::reflink::layout::TEMPLATES].contains(prefix)
            && is_lv_name(name)
            && !name.starts_with('.')
            && *v == volume);
    if !ok {
        bail!(
            "{what} has volume id {:?}, not appvms/NAME/{volume} or vm-templates/NAME/{volume}",
            info.vid
        );
    }
    Ok(QubeVolume {
        volume: volume.into(),
        lv: format!("{}.img", info.vid),
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
            dir_path: None,
        }
    }
    const A: ArchivePool = ArchivePool::Thin {
        vg: "qubes_dom0",
        pool: "vm-pool",
    };

    /// A qube in a file-reflink pool maps to its committed image when the
    /// archive backs up that pool's directory, and is refused otherwise.
    #[test]
    fn a_file_reflink_pool_maps_to_images() {
        let dir = Path::new("/var/lib/qubes");
        let r = ArchivePool::Reflink { dir };
        let mut p = pool("file-reflink", "", "");
        p.volume_group = None;
        p.thin_pool = None;
        p.dir_path = Some("/var/lib/qubes/".into());
        let q = qube("TemplateVM", "Running");
        let mut v = vol(1, false, true);
        v.vid = "vm-templates/work/root".into();
        let ok = check_volume(&q, "root", &v, &p, r).unwrap();
        assert_eq!(ok.lv, "vm-templates/work/root.img");
        let e = |v: &VolumeInfo, p: &PoolInfo, a: ArchivePool| {
            format!("{:#}", check_volume(&q, "root", v, p, a).unwrap_err())
        };
        for bad in [
            "appvms/work/private",
            "appvms/../root",
            "etc/work/root",
            "appvms/work/x/root",
            "/appvms/work/root",
            "appvms/.sparsebak/root",
        ] {
            v.vid = bad.into();
            assert!(e(&v, &p, r).contains("volume id"), "{bad}");
        }
        v.vid = "appvms/work/root".into();
        let other = ArchivePool::Reflink {
            dir: Path::new("/srv/qubes"),
        };
        let m = e(&v, &p, other);
        assert!(
            m.contains("/srv/qubes") && m.contains("--source=reflink:"),
            "{m}"
        );
        let m = e(&v, &pool("lvm_thin", "qubes_dom0", "vm-pool"), r);
        assert!(
            m.contains("qubes_dom0/vm-pool") && m.contains("--source=VG/POOL"),
            "{m}"
        );
        let m = e(&v, &pool("zfs", "", ""), r);
        assert!(m.contains("driver zfs"), "{m}");
    }

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
            m.contains("file-reflink") && m.contains("--source=reflink:"),
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
