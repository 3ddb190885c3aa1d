//! How a Qubes file-reflink pool lays out its images, and the archive's
//! names for them.
//!
//! Qubes' `file-reflink` driver (qubes-core-admin, qubes/storage/reflink.py)
//! keeps a qube's volume `VOL` as `appvms/NAME/VOL.img`, a template's as
//! `vm-templates/NAME/VOL.img`: the committed image, replaced by a rename
//! when a running qube stops. Beside it: `VOL-dirty.img` (the copy a running
//! qube writes), `VOL-precache.img` (a copy prepared for the next start),
//! `VOL-import.img` (an import in progress) and revisions `VOL.img.N@…Z`.
//! sparsebak names these volumes as LVM pools do (`vm-NAME-private`,
//! `vm-NAME-root`) and backs up only the committed image. Any other volume
//! name is a file directly in the pool directory.

use std::path::{Path, PathBuf};

pub const APPVMS: &str = "appvms";
pub const TEMPLATES: &str = "vm-templates";
/// The volumes Qubes saves when a qube stops; `volatile` and `kernel` are
/// not worth a backup.
pub const SAVED: [&str; 2] = ["private", "root"];

/// The qube and volume an archive name stands for: `vm-NAME-private` →
/// (`NAME`, `private`), `vm-NAME-root` → (`NAME`, `root`).
pub fn qube_volume(vol: &str) -> Option<(&str, &str)> {
    let rest = vol.strip_prefix("vm-")?;
    SAVED.iter().find_map(|kind| {
        let name = rest.strip_suffix(kind)?.strip_suffix('-')?;
        (!name.is_empty()).then_some((name, *kind))
    })
}

/// Where the committed image of volume `vol` (an archive volume name, or the name a
/// qube's volume has in Qubes, `vm-NAME-private`) lives in the pool at
/// `dir`: a template's under `vm-templates/` (when that directory holds the
/// qube), any other qube's under `appvms/`.
pub fn image_path(dir: &Path, vol: &str) -> PathBuf {
    match qube_volume(vol) {
        Some((name, kind)) => {
            let t = dir.join(TEMPLATES).join(name);
            let base = if t.is_dir() {
                t
            } else {
                dir.join(APPVMS).join(name)
            };
            base.join(format!("{kind}.img"))
        }
        None => dir.join(vol),
    }
}

/// What Qubes' files beside the committed image say about it, for the
/// send report: `None` when the qube is at rest.
pub fn busy_note(image: &Path) -> Option<String> {
    let stem = image.to_str()?.strip_suffix(".img")?;
    let dirty = PathBuf::from(format!("{stem}-dirty.img"));
    let import = PathBuf::from(format!("{stem}-import.img"));
    if dirty.exists() {
        return Some(format!(
            "{} exists: the qube is running (or did not stop cleanly); its writes since it \
             started are not in this backup, which holds the committed image {} as the qube \
             would start from it; they are backed up after the qube stops",
            dirty.display(),
            image.display()
        ));
    }
    import.exists().then(|| {
        format!(
            "{} exists: an import into this volume is in progress; this backup holds the \
             committed image {} as it was before",
            import.display(),
            image.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsebak_common::names::VolName;

    fn v(s: &str) -> &str {
        VolName::new(s).unwrap();
        s
    }

    #[test]
    fn qube_names_map_to_the_pool_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("vm-templates/fedora-41")).unwrap();
        assert_eq!(
            qube_volume(v("vm-my-work-private")),
            Some(("my-work", "private"))
        );
        assert_eq!(
            qube_volume(v("vm-fedora-41-root")),
            Some(("fedora-41", "root"))
        );
        for other in ["vm--root", "vm-x-volatile", "web.img", "vmx-private"] {
            assert_eq!(qube_volume(v(other)), None, "{other}");
        }
        assert_eq!(
            image_path(d, v("vm-my-work-private")),
            d.join("appvms/my-work/private.img")
        );
        assert_eq!(
            image_path(d, v("vm-fedora-41-root")),
            d.join("vm-templates/fedora-41/root.img")
        );
        assert_eq!(
            image_path(d, v("vm-fedora-41-private")),
            d.join("vm-templates/fedora-41/private.img")
        );
        assert_eq!(image_path(d, v("web.img")), d.join("web.img"));
    }

    #[test]
    fn a_dirty_or_import_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("private.img");
        std::fs::write(&img, b"").unwrap();
        assert_eq!(busy_note(&img), None);
        std::fs::write(dir.path().join("private-precache.img"), b"").unwrap();
        assert_eq!(busy_note(&img), None);
        std::fs::write(dir.path().join("private-import.img"), b"").unwrap();
        assert!(busy_note(&img).unwrap().contains("import"));
        std::fs::write(dir.path().join("private-dirty.img"), b"").unwrap();
        assert!(busy_note(&img).unwrap().contains("running"));
    }
}
