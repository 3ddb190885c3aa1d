//! delete: the volume leaves the archive, its snapshots, local metadata and
//! configuration.

use super::harness::{volume_bytes, World, VOL};
use crate::config::Config;
use crate::ops::delete::{delete, DeleteOptions};
use crate::ops::send::{send, SendOptions};

fn names_under(dir: &std::path::Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            names_under(&e.path(), out);
        }
    }
}

#[test]
fn removes_archive_data_snapshots_metadata_and_configuration() {
    let w = World::thin(volume_bytes(4, 7));
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
    let mut before = Vec::new();
    names_under(&w.path("archive"), &mut before);
    assert!(before.iter().any(|n| n == VOL), "{before:?}");
    assert!(w.lvm.0.borrow().lvs.contains_key(&format!("{VOL}.tick")));

    let o = DeleteOptions { volume: VOL.into() };
    let vol = delete(&mut w.ctx(), &w.ui, &o).unwrap();
    assert_eq!(vol.as_str(), VOL);

    let mut after = Vec::new();
    names_under(&w.path("archive"), &mut after);
    assert!(!after.iter().any(|n| n == VOL), "{after:?}");
    let lvs: Vec<String> = w.lvm.0.borrow().lvs.keys().cloned().collect();
    assert_eq!(lvs, ["pool", VOL], "only the origin and the pool are left");
    assert!(w
        .events()
        .iter()
        .any(|e| e.contains(&format!("SnapshotRemoved(\"vg/{VOL}.tick\")"))));
    assert!(!w.meta.vol_dir(&vol).exists());
    let config = Config::load(&w.meta.root).unwrap();
    assert!(config.volumes.is_empty());

    let e = delete(&mut w.ctx(), &w.ui, &o).unwrap_err();
    assert_eq!(format!("{e:#}"), format!("volume {VOL} is not configured"));
}

#[test]
fn a_volume_never_sent_is_deleted_too() {
    let w = World::thin(volume_bytes(2, 8));
    let o = DeleteOptions { volume: VOL.into() };
    delete(&mut w.ctx(), &w.ui, &o).unwrap();
    assert!(Config::load(&w.meta.root).unwrap().volumes.is_empty());
}
