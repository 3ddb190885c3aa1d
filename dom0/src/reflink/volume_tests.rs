//! The copy rotation and its recovery over the content-addressed fake
//! (fiemap::fake); the real file systems are covered end to end by
//! dom0/tests/it/reflink.rs.

use super::*;
use crate::reflink::fiemap::fake::FakeFs;
use std::os::unix::fs::FileExt;

const C: u64 = 64 << 10;

struct World {
    dir: tempfile::TempDir,
    fs: FakeFs,
    vol: VolName,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("img"), vec![0u8; 8 * C as usize]).unwrap();
        World {
            dir,
            fs: FakeFs::default(),
            vol: VolName::new("vm-a-private").unwrap(),
        }
    }
    fn rv(&self) -> ReflinkVolume<'_> {
        ReflinkVolume {
            fs: &self.fs,
            vol: &self.vol,
            image: self.dir.path().join("img"),
            snap_dir: self.dir.path().join(".sparsebak/uuid"),
            map_path: self.dir.path().join("deltamap"),
            cs: ChunkSize::from_factor(1).unwrap(),
        }
    }
    fn write(&self, off: u64, data: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.path().join("img"))
            .unwrap();
        f.write_all_at(data, off).unwrap();
    }
    /// The copies present, as file names.
    fn copies(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join(".sparsebak/uuid"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn flagged(m: &DeltaMap) -> Vec<u64> {
    (0..m.chunks()).filter(|&i| m.get(i)).collect()
}

fn incremental(p: Prepared) -> (PathBuf, DeltaMap, u64, bool) {
    match p {
        Prepared::Incremental {
            tick,
            map,
            harvested,
            resync,
            ..
        } => (tick, map, harvested, resync),
        other => panic!("expected an incremental harvest, got {other:?}"),
    }
}

/// The first send, then writes: only the written chunks are flagged, the
/// map accumulates across harvests until a send clears it, and one tick
/// remains after each rotation.
#[test]
fn harvests_flag_written_chunks_and_rotate_the_copy() {
    let w = World::new();
    let rv = w.rv();
    assert!(matches!(
        rv.harvest(false, false).unwrap(),
        Prepared::NotStarted
    ));
    let Prepared::Full { tick, map } = rv.harvest(false, true).unwrap() else {
        panic!("first send is full")
    };
    assert_eq!(map.count(), 0);
    assert_eq!(w.copies(), [tick.file_name().unwrap().to_string_lossy()]);
    rv.sent(map).unwrap();
    w.write(2 * C + 5, b"x");
    w.write(5 * C, &[7; 5000]); // spans chunk 5 only
    let (tick, map, n, resync) = incremental(rv.harvest(true, false).unwrap());
    assert_eq!((n, resync), (2, false));
    assert_eq!(flagged(&map), [2, 5]);
    assert_eq!(
        std::fs::read(&tick).unwrap(),
        std::fs::read(&rv.image).unwrap()
    );
    w.write(7 * C, b"y");
    let (_, map, n, _) = incremental(rv.harvest(true, true).unwrap());
    assert_eq!(n, 1);
    assert_eq!(flagged(&map), [2, 5, 7]);
    assert_eq!(w.copies().len(), 1);
    rv.sent(map).unwrap();
    let (_, map, n, _) = incremental(rv.harvest(true, true).unwrap());
    assert_eq!((n, map.count()), (0, 0));
}

/// Every state a killed harvest can leave is completed or undone.
#[test]
fn an_interrupted_rotation_is_completed_or_undone() {
    let w = World::new();
    let rv = w.rv();
    let Prepared::Full { map, .. } = rv.harvest(false, true).unwrap() else {
        panic!()
    };
    rv.sent(map).unwrap();
    // Killed after step 1: a stale tock, removed; nothing missed.
    w.write(C, b"a");
    let stale = rv.take_copy(None).unwrap().unwrap();
    drop(stale.file);
    let (_, map, n, _) = incremental(rv.harvest(true, false).unwrap());
    assert_eq!((n, flagged(&map)), (1, vec![1]));
    assert_eq!(w.copies().len(), 1);
    // Killed after step 3: the map names the tock, which becomes the tick.
    w.write(3 * C, b"b");
    let (tick, mut map) = rv.current().unwrap();
    let tock = rv
        .take_copy(map.as_ref().map(|m| m.base_thin_id))
        .unwrap()
        .unwrap();
    let mut m = map.take().unwrap();
    rv.compare(tick.as_ref().unwrap(), &tock, &mut m).unwrap();
    m.base_thin_id = tock.token;
    m.save(&rv.map_path).unwrap();
    let (tick, map) = rv.current().unwrap();
    assert_eq!(tick.unwrap(), rv.copy_path(tock.token, Kind::Tick));
    assert_eq!(flagged(&map.unwrap()), [1, 3]);
    assert_eq!(w.copies().len(), 1, "the old tick is gone");
    // Killed between the rename and removing the old tick: same outcome.
    let (_, map, n, _) = incremental(rv.harvest(true, false).unwrap());
    assert_eq!((n, flagged(&map)), (0, vec![1, 3]));
}

/// A tick removed by hand, or a lost map: a fresh copy, every chunk
/// flagged (a full re-read, never a missed change).
#[test]
fn a_lost_tick_or_map_resynchronises() {
    let w = World::new();
    let rv = w.rv();
    let Prepared::Full { tick, map } = rv.harvest(false, true).unwrap() else {
        panic!()
    };
    rv.sent(map).unwrap();
    std::fs::remove_file(&tick).unwrap();
    let (_, map, n, resync) = incremental(rv.harvest(true, true).unwrap());
    assert!(resync);
    assert_eq!((n, map.count()), (8, 8));
    rv.sent(map).unwrap();
    std::fs::remove_file(&rv.map_path).unwrap();
    let (_, map, _, resync) = incremental(rv.harvest(true, true).unwrap());
    assert!(resync && map.count() == 8);
    assert_eq!(w.copies().len(), 1);
}

#[test]
fn no_reflinks_is_an_error_that_says_so_and_leaves_no_copy() {
    let mut w = World::new();
    w.fs.clone_fails = Some(nix::libc::EOPNOTSUPP);
    let rv = w.rv();
    let e = rv.harvest(false, true).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("must support reflinks"), "{msg}");
    assert!(msg.contains("img"), "{msg}");
    assert!(w.copies().is_empty());
    std::fs::remove_file(&rv.image).unwrap();
    assert!(matches!(rv.harvest(true, true).unwrap(), Prepared::Missing));
}

#[test]
fn only_this_volumes_copies_are_touched() {
    let w = World::new();
    let rv = w.rv();
    std::fs::create_dir_all(&rv.snap_dir).unwrap();
    for other in [
        "vm-a-private2.0123456789abcdef.tick",
        "vm-a.0123456789abcdef.tick",
        "vm-a-private.0123456789abcdef.tick.bak",
        "vm-a-private.0123.tick",
    ] {
        std::fs::write(rv.snap_dir.join(other), b"").unwrap();
    }
    let Prepared::Full { .. } = rv.harvest(false, true).unwrap() else {
        panic!()
    };
    assert_eq!(w.copies().len(), 5);
    assert_eq!(rv.remove_copies().unwrap().len(), 1);
    assert_eq!(w.copies().len(), 4);
}
