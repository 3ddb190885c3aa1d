//! The pool's metadata snapshot, reserved for thin_delta and released on
//! every path: on success, on error (drop), and on SIGINT/SIGTERM/SIGHUP
//! (deferred until released, then reported).
//!
//! SIGKILL, a crash or a power cut cannot release it, and a reservation
//! left behind would block every later run of every tool that needs it.
//! So before reserving, sparsebak writes a marker file (in the archive's
//! metadata directory, whose lock serialises runs), records the held root
//! block after reserving, and deletes the marker after releasing. A
//! reservation found held at the start of a run is sparsebak's own, left by
//! an interrupted run, when the marker names this pool and either the same
//! root or none yet (interrupted while reserving): it is released. Any other
//! reservation belongs to another tool and is left alone.

use super::Lvm;
use crate::fsutil::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::SigId;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Contents of the marker file.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Marker {
    vg: String,
    pool: String,
    /// The pool's held metadata root once reserved; `None` while reserving.
    root: Option<u64>,
}

fn load_marker(path: &Path) -> Result<Option<Marker>> {
    match std::fs::read(path) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_marker(path: &Path, m: &Marker) -> Result<()> {
    write_atomic(path, &serde_json::to_vec(m)?)
}

fn remove_marker(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The reserved metadata snapshot of `vg`/`pool`; released on drop.
pub struct MetaSnap<'a> {
    lvm: &'a dyn Lvm,
    vg: &'a str,
    pool: &'a str,
    marker: &'a Path,
    sigs: Vec<SigId>,
    caught: Arc<AtomicBool>,
    held: bool,
}

impl<'a> MetaSnap<'a> {
    /// Reserve the metadata snapshot; `marker` is the archive's marker file.
    pub fn reserve(lvm: &'a dyn Lvm, vg: &'a str, pool: &'a str, marker: &'a Path) -> Result<Self> {
        if let Some(root) = lvm.metadata_snap_root(vg, pool)? {
            let ours = load_marker(marker)?
                .is_some_and(|m| m.vg == vg && m.pool == pool && m.root.is_none_or(|r| r == root));
            if !ours {
                bail!(
                    "the metadata snapshot of thin pool {vg}/{pool} is already reserved by another tool \
                     (thin_dump, thin_ls, another backup program?); sparsebak leaves it alone: \
                     try again once that tool has released it (`dmsetup message {} 0 release_metadata_snap` \
                     releases it by force)",
                    super::dm::pool_device(vg, pool)
                );
            }
            log::warn!(
                "releasing the metadata snapshot of thin pool {vg}/{pool} that an interrupted \
                 sparsebak run left reserved"
            );
            lvm.release_metadata_snap(vg, pool)?;
        }
        let caught = Arc::new(AtomicBool::new(false));
        let mut sigs = Vec::new();
        for s in [SIGINT, SIGTERM, SIGHUP] {
            sigs.push(signal_hook::flag::register(s, caught.clone())?);
        }
        let mut m = MetaSnap {
            lvm,
            vg,
            pool,
            marker,
            sigs,
            caught,
            held: false,
        };
        let mut mark = Marker {
            vg: vg.into(),
            pool: pool.into(),
            root: None,
        };
        save_marker(marker, &mark)?;
        if let Err(e) = lvm.reserve_metadata_snap(vg, pool) {
            let _ = remove_marker(marker);
            return Err(e);
        }
        m.held = true;
        mark.root = lvm.metadata_snap_root(vg, pool)?;
        save_marker(marker, &mark)?;
        Ok(m)
    }

    /// Release; an error if that fails or if a signal arrived meanwhile.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        let r = self.lvm.release_metadata_snap(self.vg, self.pool);
        for id in self.sigs.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        r?;
        remove_marker(self.marker)?;
        if self.caught.load(Ordering::SeqCst) {
            bail!("interrupted by a signal; the pool's metadata snapshot was released");
        }
        Ok(())
    }
}

impl Drop for MetaSnap<'_> {
    fn drop(&mut self) {
        if self.held && self.lvm.release_metadata_snap(self.vg, self.pool).is_ok() {
            let _ = remove_marker(self.marker);
        }
        for id in self.sigs.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::fake::FakeLvm;

    fn held(l: &FakeLvm) -> bool {
        l.0.borrow().meta_held
    }

    #[test]
    fn reserve_release_leaves_no_marker() {
        let l = FakeLvm::new();
        let t = tempfile::tempdir().unwrap();
        let mk = t.path().join("marker");
        let m = MetaSnap::reserve(&l, "vg", "pool", &mk).unwrap();
        assert!(held(&l));
        let saved = load_marker(&mk).unwrap().unwrap();
        assert_eq!(saved.root, l.metadata_snap_root("vg", "pool").unwrap());
        assert!(saved.root.is_some());
        m.release().unwrap();
        assert!(!held(&l) && !mk.exists());
        drop(MetaSnap::reserve(&l, "vg", "pool", &mk).unwrap());
        assert!(!held(&l) && !mk.exists(), "drop releases");
    }

    /// Regression: a run killed (SIGKILL) while it held the metadata
    /// snapshot left it reserved, and every later run failed with "already
    /// reserved by another tool" until someone released it by hand.
    #[test]
    fn reservation_left_by_a_killed_run_is_released() {
        let l = FakeLvm::new();
        let t = tempfile::tempdir().unwrap();
        let mk = t.path().join("marker");
        std::mem::forget(MetaSnap::reserve(&l, "vg", "pool", &mk).unwrap()); // "killed"
        assert!(held(&l) && mk.exists());
        let m = MetaSnap::reserve(&l, "vg", "pool", &mk).unwrap();
        m.release().unwrap();
        assert!(!held(&l) && !mk.exists());
        // killed while reserving: the marker has no root yet
        save_marker(
            &mk,
            &Marker {
                vg: "vg".into(),
                pool: "pool".into(),
                root: None,
            },
        )
        .unwrap();
        l.reserve_metadata_snap("vg", "pool").unwrap();
        MetaSnap::reserve(&l, "vg", "pool", &mk)
            .unwrap()
            .release()
            .unwrap();
        assert!(!held(&l));
    }

    #[test]
    fn another_tools_reservation_is_left_alone() {
        let l = FakeLvm::new();
        let t = tempfile::tempdir().unwrap();
        let mk = t.path().join("marker");
        l.reserve_metadata_snap("vg", "pool").unwrap(); // someone else
        let err = MetaSnap::reserve(&l, "vg", "pool", &mk).err().unwrap();
        assert!(format!("{err:#}").contains("already reserved by another tool"));
        assert!(held(&l) && !mk.exists());
        // our stale marker, but the reservation now held is another one
        let root = l.metadata_snap_root("vg", "pool").unwrap().unwrap();
        save_marker(
            &mk,
            &Marker {
                vg: "vg".into(),
                pool: "pool".into(),
                root: Some(root + 1),
            },
        )
        .unwrap();
        assert!(MetaSnap::reserve(&l, "vg", "pool", &mk).is_err());
        assert!(held(&l), "a different root is not ours");
        // a marker for another pool is not ours either
        let other = t.path().join("other");
        save_marker(
            &other,
            &Marker {
                vg: "vg".into(),
                pool: "pool2".into(),
                root: None,
            },
        )
        .unwrap();
        assert!(MetaSnap::reserve(&l, "vg", "pool", &other).is_err());
        assert!(held(&l));
    }
}
