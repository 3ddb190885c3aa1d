//! `add --qube` in an archive of a Qubes file-reflink pool
//! (`--source=reflink:`): a qube's volumes map to their committed images;
//! a qube in another pool is refused. Sending them needs a reflink file
//! system: dom0/tests/it/reflink.rs does that on Btrfs.

use super::harness::{volume_bytes, World};
use super::qubes::add;
use super::qubes_world::Qubes;
use crate::config::{Config, SourceSpec};
use sparsebak_common::names::VolName;

fn vol(id: &str, part: &str) -> VolName {
    VolName::new(&crate::qubes::archive_volume(id, part)).unwrap()
}

#[test]
fn a_qube_in_a_file_reflink_pool_maps_to_its_images() {
    let w = World::thin(volume_bytes(1, 1));
    let dir = w.path("var-lib-qubes");
    let mut c = Config::load(&w.meta.root).unwrap();
    c.source = Some(SourceSpec::Reflink { path: dir.clone() });
    c.save(&w.meta.root).unwrap();
    let q = Qubes::new(&w);
    q.fixture(&[
        "--pool",
        "varlibqubes",
        "file-reflink",
        &dir.to_string_lossy(),
    ]);
    for (name, class) in [("fedora-41", "TemplateVM"), ("work", "AppVM")] {
        q.fixture(&[name, class, "Running", "fedora-41"]);
        let vols: &[&str] = match class {
            "TemplateVM" => &["private", "root"],
            _ => &["private"],
        };
        let prefix = if class == "TemplateVM" {
            "vm-templates"
        } else {
            "appvms"
        };
        for v in vols {
            q.set(name, &format!("volumes/{v}/pool"), "varlibqubes");
            q.set(
                name,
                &format!("volumes/{v}/vid"),
                &format!("{prefix}/{name}/{v}"),
            );
        }
    }
    let a = add(&w, &q, "work").unwrap();
    assert_eq!(a.volumes[0].2, "appvms/work/private.img");
    let t = add(&w, &q, "fedora-41").unwrap();
    let c = Config::load(&w.meta.root).unwrap();
    assert_eq!(
        c.volume_path(&vol(&a.id, "private")).unwrap(),
        dir.join("appvms/work/private.img")
    );
    assert_eq!(
        c.volume_path(&vol(&t.id, "root")).unwrap(),
        dir.join("vm-templates/fedora-41/root.img")
    );
    // A qube in the LVM pool is refused, saying what to do.
    q.fixture(&["vault", "StandaloneVM", "Halted"]);
    let e = format!("{:#}", add(&w, &q, "vault").unwrap_err());
    assert!(
        e.contains("vault:private") && e.contains("--source=VG/POOL"),
        "{e}"
    );
    // A vid that is not the pool's layout is refused.
    q.set("vault", "volumes/private/pool", "varlibqubes");
    q.set("vault", "volumes/root/pool", "varlibqubes");
    q.set("vault", "volumes/private/vid", "appvms/../../etc/private");
    let e = format!("{:#}", add(&w, &q, "vault").unwrap_err());
    assert!(e.contains("volume id"), "{e}");
    assert_eq!(Config::load(&w.meta.root).unwrap().qubes.len(), 2);
}
