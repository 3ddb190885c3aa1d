//! Which chunks differ between two reflink copies of one image: the copy
//! as of the last harvest (`old`) and a new one (`new`).
//!
//! While `old` exists, every write to the image lands in newly allocated
//! blocks (the old ones are shared, so they are copied on write, on Btrfs
//! and on XFS alike), and those blocks cannot be reused while `old` holds
//! them. So a range stored at the same physical address in both copies is
//! unchanged, and the comparison costs a few FIEMAP calls, not a read.
//!
//! Never a missed change: a range whose addresses prove nothing (delayed
//! allocation, compressed, inline or encrypted extents, flags this code does
//! not know) is compared by content, chunk by chunk; holes and unwritten
//! extents both read as zeros and are equal; anything else that differs is
//! changed. A change in size flags every chunk from the old end on.

use super::fiemap::{ExtentCursor, Piece, ReflinkFs};
use crate::lvm::deltamap::DeltaMap;
use anyhow::{Context, Result};
use sparsebak_common::units::{ChunkIndex, ChunkSize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The two copies to compare.
pub struct Pair<'a> {
    pub old: &'a File,
    pub old_path: &'a Path,
    pub new: &'a File,
    pub new_path: &'a Path,
}

/// What the extent maps say of one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Same,
    Changed,
    Doubt,
}

fn verdict(a: Piece, b: Piece) -> Verdict {
    match (a, b) {
        (Piece::Doubt, _) | (_, Piece::Doubt) => Verdict::Doubt,
        (Piece::Zeros, Piece::Zeros) => Verdict::Same,
        (Piece::Data { physical: x }, Piece::Data { physical: y }) if x == y => Verdict::Same,
        _ => Verdict::Changed,
    }
}

/// What a harvest found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Chunks flagged by this comparison (each counted once).
    pub changed: u64,
    /// Bytes compared by content because the extent maps could not tell.
    pub compared_bytes: u64,
}

/// Flag in `map` (resized to the new copy's chunks) every chunk in which
/// `p.new` may differ from `p.old`.
pub fn harvest(
    fs: &dyn ReflinkFs,
    p: &Pair<'_>,
    cs: ChunkSize,
    map: &mut DeltaMap,
) -> Result<Found> {
    let size_of = |f: &File, path: &Path| {
        f.metadata()
            .map(|m| m.len())
            .with_context(|| format!("cannot stat {}", path.display()))
    };
    let (old_size, new_size) = (size_of(p.old, p.old_path)?, size_of(p.new, p.new_path)?);
    let chunks = cs.count(sparsebak_common::units::Bytes(new_size));
    map.resize(chunks);
    let mut this = DeltaMap::new(chunks, 0);
    let common = old_size.min(new_size);
    let mut doubt = Vec::new();
    let (mut a, mut b) = (ExtentCursor::new(fs, p.old), ExtentCursor::new(fs, p.new));
    let mut x = 0;
    while x < common {
        let (pa, ea) = a
            .at(x)
            .with_context(|| format!("cannot map the extents of {}", p.old_path.display()))?;
        let (pb, eb) = b
            .at(x)
            .with_context(|| format!("cannot map the extents of {}", p.new_path.display()))?;
        let end = ea.min(eb).min(common);
        match verdict(pa, pb) {
            Verdict::Same => {}
            Verdict::Changed => mark(&mut this, x, end, cs),
            Verdict::Doubt => match doubt.last_mut() {
                Some((_, e)) if *e >= x => *e = end,
                _ => doubt.push((x, end)),
            },
        }
        x = end;
    }
    if old_size != new_size {
        mark(&mut this, common, new_size.max(common + 1), cs);
    }
    let compared_bytes = by_content(p, &doubt, common, cs, &mut this)?;
    let changed = this.count();
    map.union(&this);
    Ok(Found {
        changed,
        compared_bytes,
    })
}

/// Flag the chunks overlapping `[start, end)`.
fn mark(map: &mut DeltaMap, start: u64, end: u64, cs: ChunkSize) {
    for i in start / cs.bytes()..end.div_ceil(cs.bytes()) {
        map.set(i);
    }
}

/// Compare the chunks overlapping the doubtful ranges by content (those
/// not flagged already); returns the bytes compared (per copy).
fn by_content(
    p: &Pair<'_>,
    doubt: &[(u64, u64)],
    common: u64,
    cs: ChunkSize,
    map: &mut DeltaMap,
) -> Result<u64> {
    let mut compared = 0;
    let (mut ba, mut bb) = (Vec::new(), Vec::new());
    let mut last = None;
    for &(s, e) in doubt {
        for i in s / cs.bytes()..e.div_ceil(cs.bytes()) {
            if map.get(i) || last == Some(i) {
                continue;
            }
            last = Some(i);
            let off = cs.offset(ChunkIndex(i)).0;
            let len = (common - off).min(cs.bytes()) as usize;
            ba.resize(len, 0);
            bb.resize(len, 0);
            p.old
                .read_exact_at(&mut ba, off)
                .with_context(|| format!("cannot read {} at {off:#x}", p.old_path.display()))?;
            p.new
                .read_exact_at(&mut bb, off)
                .with_context(|| format!("cannot read {} at {off:#x}", p.new_path.display()))?;
            compared += len as u64;
            if ba != bb {
                map.set(i);
            }
        }
    }
    Ok(compared)
}

#[cfg(test)]
mod tests {
    use super::super::fiemap::fake::FakeFs;
    use super::super::fiemap::{flags, Extent};
    use super::*;
    use sparsebak_common::units::Bytes;

    const C: u64 = 64 << 10;

    fn ext(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags,
        }
    }

    struct Two {
        _dir: tempfile::TempDir,
        old: (File, std::path::PathBuf),
        new: (File, std::path::PathBuf),
    }

    /// Two files of the given contents.
    fn two(old: &[u8], new: &[u8]) -> Two {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: &str, d: &[u8]| {
            let p = dir.path().join(n);
            std::fs::write(&p, d).unwrap();
            (File::open(&p).unwrap(), p)
        };
        let (old, new) = (mk("old", old), mk("new", new));
        Two {
            _dir: dir,
            old,
            new,
        }
    }

    fn run(fs: &FakeFs, t: &Two, map: &mut DeltaMap) -> Found {
        let p = Pair {
            old: &t.old.0,
            old_path: &t.old.1,
            new: &t.new.0,
            new_path: &t.new.1,
        };
        harvest(fs, &p, ChunkSize::from_factor(1).unwrap(), map).unwrap()
    }

    fn flagged(m: &DeltaMap) -> Vec<u64> {
        (0..m.chunks()).filter(|&i| m.get(i)).collect()
    }

    #[test]
    fn shared_extents_are_unchanged_and_moved_ones_changed() {
        let fs = FakeFs::default();
        let t = two(&vec![1; 10 * C as usize], &vec![1; 10 * C as usize]);
        fs.set(&t.old.0, vec![ext(0, 1 << 20, 10 * C, flags::SHARED)]);
        // A 4 KiB write in chunk 3 moved that block; chunks 6-7 are now a
        // hole (punched), and the rest is still shared.
        fs.set(
            &t.new.0,
            vec![
                ext(0, 1 << 20, 3 * C + 4096, flags::SHARED),
                ext(3 * C + 4096, 9 << 30, 4096, 0),
                ext(
                    3 * C + 8192,
                    (1 << 20) + 3 * C + 8192,
                    3 * C - 8192,
                    flags::SHARED,
                ),
                ext(8 * C, (1 << 20) + 8 * C, 2 * C, flags::SHARED | flags::LAST),
            ],
        );
        let mut map = DeltaMap::new(10, 7);
        map.set(9);
        let f = run(&fs, &t, &mut map);
        assert_eq!(
            f,
            Found {
                changed: 3,
                compared_bytes: 0
            }
        );
        assert_eq!(flagged(&map), [3, 6, 7, 9]);
    }

    #[test]
    fn holes_and_unwritten_extents_are_equal_zeros() {
        let fs = FakeFs::default();
        let t = two(&vec![0; 4 * C as usize], &vec![0; 4 * C as usize]);
        fs.set(&t.old.0, vec![ext(C, 5, C, flags::UNWRITTEN)]);
        fs.set(&t.new.0, vec![ext(2 * C, 99, C, flags::UNWRITTEN)]);
        let mut map = DeltaMap::new(4, 1);
        assert_eq!(run(&fs, &t, &mut map).changed, 0);
    }

    /// Compressed, inline and delayed extents, and unknown flags, are
    /// compared by content: equal bytes stay clear, different ones flag.
    #[test]
    fn doubtful_extents_are_compared_by_content() {
        let fs = FakeFs::default();
        let old = vec![5u8; 6 * C as usize];
        let mut new = old.clone();
        new[(4 * C + 10) as usize] = 6;
        let t = two(&old, &new);
        fs.set(&t.old.0, vec![ext(0, 1000, 6 * C, flags::ENCODED)]);
        fs.set(
            &t.new.0,
            vec![
                ext(0, 1000, 2 * C, flags::ENCODED),
                ext(2 * C, 0, C, flags::DATA_INLINE),
                ext(3 * C, 0, C, flags::DELALLOC | flags::UNKNOWN),
                ext(4 * C, 7, 2 * C, 0x4000_0000),
            ],
        );
        let mut map = DeltaMap::new(6, 1);
        let f = run(&fs, &t, &mut map);
        assert_eq!(
            f,
            Found {
                changed: 1,
                compared_bytes: 6 * C
            }
        );
        assert_eq!(flagged(&map), [4]);
    }

    #[test]
    fn growth_and_shrink_flag_from_the_old_end() {
        let fs = FakeFs::default();
        // Grown from 3 chunks + 100 bytes to 6 chunks: the partial chunk
        // and every new one.
        let t = two(&vec![0; 3 * C as usize + 100], &vec![0; 6 * C as usize]);
        let mut map = DeltaMap::new(4, 1);
        assert_eq!(run(&fs, &t, &mut map).changed, 3);
        assert_eq!(flagged(&map), [3, 4, 5]);
        // Shrunk to 2 chunks + 1 byte: the new last chunk.
        let t = two(&vec![0; 6 * C as usize], &vec![0; 2 * C as usize + 1]);
        let mut map = DeltaMap::new(6, 1);
        map.set(5);
        assert_eq!(run(&fs, &t, &mut map).changed, 1);
        assert_eq!(flagged(&map), [2]);
        assert_eq!(
            map.chunks(),
            ChunkSize::from_factor(1).unwrap().count(Bytes(2 * C + 1))
        );
    }

    #[test]
    fn data_against_a_hole_is_changed() {
        let fs = FakeFs::default();
        let t = two(&vec![0; 4 * C as usize], &vec![0; 4 * C as usize]);
        fs.set(
            &t.new.0,
            vec![ext(C + 4096, 50, 4096, 0), ext(3 * C, 60, 10, 0)],
        );
        let mut map = DeltaMap::new(4, 1);
        run(&fs, &t, &mut map);
        assert_eq!(flagged(&map), [1, 3]);
    }
}
