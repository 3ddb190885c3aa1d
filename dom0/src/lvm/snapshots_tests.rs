use super::*;
use crate::lvm::fake::{FakeLvm, BLOCK};

const VOL: &str = "vm-a-private";

struct Env {
    lvm: FakeLvm,
    dir: tempfile::TempDir,
    vol: VolName,
}

impl Env {
    fn new(blocks: usize) -> Env {
        let lvm = FakeLvm::new();
        lvm.add_volume(VOL, (0..blocks * BLOCK).map(|i| (i / 7) as u8).collect());
        Env {
            lvm,
            dir: tempfile::tempdir().unwrap(),
            vol: VolName::new(VOL).unwrap(),
        }
    }
    fn tv(&self) -> ThinVolume<'_> {
        ThinVolume {
            lvm: &self.lvm,
            vg: "vg",
            pool: "pool",
            vol: &self.vol,
            lv: self.vol.as_str(),
            map_path: self.dir.path().join("deltamap"),
            metasnap_marker: self.dir.path().join("metasnap"),
            cs: ChunkSize::from_factor(1).unwrap(),
        }
    }
    fn names(&self) -> Vec<String> {
        self.lvm.0.borrow().lvs.keys().cloned().collect()
    }
    /// Full send, as the send command does it.
    fn first_send(&self) {
        match self.tv().harvest(false, true).unwrap() {
            Prepared::Full { map, .. } => self.tv().sent(map).unwrap(),
            other => panic!("{other:?}"),
        }
    }
    fn flagged(&self) -> Vec<u64> {
        let m = DeltaMap::load(&self.tv().map_path).unwrap().unwrap();
        (0..m.chunks()).filter(|&i| m.get(i)).collect()
    }
}

#[test]
fn incremental_flags_exactly_the_written_chunks() {
    let e = Env::new(16);
    e.first_send();
    assert_eq!(e.names(), vec!["pool", "vm-a-private", "vm-a-private.tick"]);
    e.lvm.write(VOL, 3 * BLOCK + 10, b"x");
    e.lvm.write(VOL, 9 * BLOCK, &[1; BLOCK + 1]);
    match e.tv().harvest(true, true).unwrap() {
        Prepared::Incremental {
            map,
            tick,
            resync: false,
            ..
        } => {
            assert_eq!(
                (0..16).filter(|&i| map.get(i)).collect::<Vec<_>>(),
                vec![3, 9, 10]
            );
            assert_eq!(
                e.lvm.0.borrow().data[&tick.thin_id.unwrap()],
                e.lvm.contents(VOL)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.lvm.0.borrow().meta_held);
    assert_eq!(e.names(), vec!["pool", "vm-a-private", "vm-a-private.tick"]);
}

#[test]
fn monitor_rotations_accumulate() {
    let e = Env::new(8);
    e.first_send();
    assert!(matches!(
        e.tv().harvest(true, false).unwrap(),
        Prepared::Incremental { .. }
    ));
    e.lvm.write(VOL, 0, b"a");
    e.tv().harvest(true, false).unwrap();
    e.lvm.write(VOL, 5 * BLOCK, b"b");
    e.tv().harvest(true, false).unwrap();
    e.lvm.write(VOL, 7 * BLOCK, b"c");
    e.tv().harvest(true, false).unwrap();
    assert_eq!(e.flagged(), vec![0, 5, 7]);
}

#[test]
fn monitor_before_first_send_does_nothing() {
    let e = Env::new(4);
    assert!(matches!(
        e.tv().harvest(false, false).unwrap(),
        Prepared::NotStarted
    ));
    assert_eq!(e.names(), vec!["pool", "vm-a-private"]);
}

/// Kill the run at every step: the next run must flag every written chunk.
#[test]
fn interrupted_at_any_step_misses_nothing() {
    for (op, nth) in [
        ("snapshot", 0),
        ("reserve", 0),
        ("thin_delta", 0),
        ("remove", 0),
        ("rename", 0),
    ] {
        let e = Env::new(8);
        e.first_send();
        e.lvm.write(VOL, 2 * BLOCK, b"z");
        let done = e.lvm.0.borrow().calls.get(op).copied().unwrap_or(0);
        e.lvm.0.borrow_mut().fail = Some((op, nth + done));
        assert!(e.tv().harvest(true, true).is_err(), "{op}");
        e.lvm.0.borrow_mut().fail = None;
        assert!(
            !e.lvm.0.borrow().meta_held,
            "{op}: metadata snapshot left reserved"
        );
        e.lvm.write(VOL, 6 * BLOCK, b"y");
        match e.tv().harvest(true, true).unwrap() {
            Prepared::Incremental { map, tick, .. } => {
                assert!(
                    map.get(2) && map.get(6),
                    "{op}: {:?}",
                    (0..8).filter(|&i| map.get(i)).collect::<Vec<_>>()
                );
                assert_eq!(
                    e.lvm.0.borrow().data[&tick.thin_id.unwrap()],
                    e.lvm.contents(VOL),
                    "{op}"
                );
            }
            other => panic!("{op}: {other:?}"),
        }
        assert_eq!(
            e.names(),
            vec!["pool", "vm-a-private", "vm-a-private.tick"],
            "{op}"
        );
    }
}

#[test]
fn crash_between_remove_tick_and_rename_is_completed() {
    let e = Env::new(8);
    e.first_send();
    e.lvm.write(VOL, 4 * BLOCK, b"q");
    e.lvm.0.borrow_mut().fail = Some(("rename", 0));
    assert!(e.tv().harvest(true, true).is_err());
    e.lvm.0.borrow_mut().fail = None;
    assert_eq!(e.names(), vec!["pool", "vm-a-private", "vm-a-private.tock"]);
    match e.tv().harvest(true, true).unwrap() {
        Prepared::Incremental { map, resync, .. } => {
            assert!(map.get(4) && !resync && map.count() == 1)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lost_snapshot_resyncs_everything() {
    let e = Env::new(8);
    e.first_send();
    e.lvm.remove("vg", "vm-a-private.tick").unwrap();
    match e.tv().harvest(true, true).unwrap() {
        Prepared::Incremental {
            map, resync: true, ..
        } => assert_eq!(map.count(), 8),
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_snapshot_held_by_another_tool_is_left_alone() {
    let e = Env::new(8);
    e.first_send();
    e.lvm.0.borrow_mut().meta_held = true;
    let err = format!("{:#}", e.tv().harvest(true, true).unwrap_err());
    assert!(err.contains("already reserved by another tool"), "{err}");
    assert!(
        e.lvm.0.borrow().meta_held,
        "must not release another tool's snapshot"
    );
    assert_eq!(e.names(), vec!["pool", "vm-a-private", "vm-a-private.tick"]);
}

#[test]
fn not_thin_and_missing_pool_are_errors() {
    let e = Env::new(2);
    e.lvm.0.borrow_mut().lvs.remove("pool");
    let err = format!("{:#}", e.tv().harvest(false, true).unwrap_err());
    assert!(err.contains("thin pool vg/pool does not exist"), "{err}");
}
