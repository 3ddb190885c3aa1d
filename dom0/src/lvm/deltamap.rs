//! The per-volume change map: one bit per backup chunk, set when the chunk
//! may differ between the archive's latest session and the `.tick` snapshot
//! whose thin id the map records as its base.
//!
//! Invariant: archive(latest) + flagged chunks read from snapshot `base`
//! = snapshot `base`. Every step of monitor/send keeps it true on disk, so a
//! crash at any point leaves a state the next run completes from.
//!
//! File: one JSON header line `{"version":1,"chunks":N,"base_thin_id":ID}`,
//! then ceil(N/8) bytes, chunk n in byte n/8, bit n%8 (LSB first). Written
//! atomically.
//!
//! A reflink source (crate::reflink) keeps the same map, its base being the
//! token in the name of its `.tick` copy instead of a thin id.

use crate::fsutil::write_atomic;
use crate::lvm::delta::{BlockSectors, DeltaKind, DeltaRun};
use crate::source::ChangeMap;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::units::{ChunkIndex, ChunkSize};
use std::path::Path;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    chunks: u64,
    base_thin_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaMap {
    bits: Vec<u8>,
    chunks: u64,
    pub base_thin_id: u64,
}

impl DeltaMap {
    pub fn new(chunks: u64, base_thin_id: u64) -> Self {
        DeltaMap {
            bits: vec![0; chunks.div_ceil(8) as usize],
            chunks,
            base_thin_id,
        }
    }

    /// Every chunk flagged: used when the snapshots can no longer tell what changed.
    pub fn all(chunks: u64, base_thin_id: u64) -> Self {
        let mut m = Self::new(chunks, base_thin_id);
        m.bits.iter_mut().for_each(|b| *b = 0xff);
        m
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    pub fn set(&mut self, idx: u64) {
        if idx < self.chunks {
            self.bits[(idx / 8) as usize] |= 1 << (idx % 8);
        }
    }

    pub fn get(&self, idx: u64) -> bool {
        idx < self.chunks && self.bits[(idx / 8) as usize] & (1 << (idx % 8)) != 0
    }

    pub fn count(&self) -> u64 {
        (0..self.chunks).filter(|&i| self.get(i)).count() as u64
    }

    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|b| *b = 0);
    }

    /// Change the number of chunks: new chunks start clear, dropped ones vanish.
    pub fn resize(&mut self, chunks: u64) {
        for i in chunks..self.chunks.min(chunks.div_ceil(8) * 8) {
            self.bits[(i / 8) as usize] &= !(1 << (i % 8));
        }
        self.bits.resize(chunks.div_ceil(8) as usize, 0);
        self.chunks = chunks;
    }

    /// Flag every chunk `other` flags (of the chunks both have).
    pub fn union(&mut self, other: &DeltaMap) {
        for i in 0..self.chunks.min(other.chunks) {
            if other.get(i) {
                self.set(i);
            }
        }
    }

    /// Flag every backup chunk that overlaps a changed pool-block run. Works
    /// for any ratio of pool block size to chunk size. Returns chunks flagged.
    pub fn mark(&mut self, dbs: BlockSectors, run: DeltaRun, cs: ChunkSize) -> u64 {
        if run.kind == DeltaKind::Same || run.length == 0 {
            return 0;
        }
        let start = run.begin.0 * dbs.bytes();
        let end = (run.begin.0 + run.length) * dbs.bytes();
        let first = start / cs.bytes();
        let last = ((end - 1) / cs.bytes()).min(self.chunks.saturating_sub(1));
        let mut n = 0;
        for i in first..=last {
            if i < self.chunks {
                self.set(i);
                n += 1;
            }
        }
        n
    }

    pub fn load(path: &Path) -> Result<Option<DeltaMap>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read change map {}", path.display()))
            }
        };
        let nl = bytes.iter().position(|&b| b == b'\n').filter(|&p| p < 4096);
        let Some(nl) = nl else {
            bail!("change map {} has no header", path.display())
        };
        let h: Header = serde_json::from_slice(&bytes[..nl])
            .with_context(|| format!("change map {} has a bad header", path.display()))?;
        if h.version != 1 {
            bail!(
                "change map {} has version {}, expected 1",
                path.display(),
                h.version
            );
        }
        let body = &bytes[nl + 1..];
        if body.len() as u64 != h.chunks.div_ceil(8) {
            bail!(
                "change map {} is {} bytes, expected {} for {} chunks",
                path.display(),
                body.len(),
                h.chunks.div_ceil(8),
                h.chunks
            );
        }
        Ok(Some(DeltaMap {
            bits: body.to_vec(),
            chunks: h.chunks,
            base_thin_id: h.base_thin_id,
        }))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let h = Header {
            version: 1,
            chunks: self.chunks,
            base_thin_id: self.base_thin_id,
        };
        let mut out = serde_json::to_vec(&h)?;
        out.push(b'\n');
        out.extend_from_slice(&self.bits);
        write_atomic(path, &out)
    }
}

impl ChangeMap for DeltaMap {
    fn may_differ(&self, idx: ChunkIndex) -> bool {
        idx.0 >= self.chunks || self.get(idx.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::delta::PoolBlock;

    fn run(kind: DeltaKind, begin: u64, length: u64) -> DeltaRun {
        DeltaRun {
            kind,
            begin: PoolBlock(begin),
            length,
        }
    }

    #[test]
    fn any_ratio_of_pool_block_to_chunk() {
        let c64 = ChunkSize::from_factor(1).unwrap();
        let c256 = ChunkSize::from_factor(4).unwrap();
        // 64 KiB pool blocks, 64 KiB chunks: one to one.
        let mut m = DeltaMap::new(100, 1);
        assert_eq!(
            m.mark(BlockSectors(128), run(DeltaKind::Different, 16, 2), c64),
            2
        );
        assert!(m.get(16) && m.get(17) && !m.get(15) && !m.get(18));
        // 512 KiB pool blocks, 64 KiB chunks: one block flags 8 chunks.
        let mut m = DeltaMap::new(100, 1);
        assert_eq!(
            m.mark(BlockSectors(1024), run(DeltaKind::RightOnly, 1, 1), c64),
            8
        );
        assert_eq!((8..16).filter(|&i| m.get(i)).count(), 8);
        // 64 KiB pool blocks, 256 KiB chunks: four blocks share a chunk.
        let mut m = DeltaMap::new(100, 1);
        assert_eq!(
            m.mark(BlockSectors(128), run(DeltaKind::LeftOnly, 5, 1), c256),
            1
        );
        assert!(m.get(1) && m.count() == 1);
        assert_eq!(
            m.mark(BlockSectors(128), run(DeltaKind::Different, 3, 2), c256),
            2
        );
        assert!(m.get(0) && m.get(1));
        // `same` runs flag nothing; runs past the end are clamped.
        assert_eq!(
            m.mark(BlockSectors(128), run(DeltaKind::Same, 0, 400), c256),
            0
        );
        assert_eq!(
            m.mark(BlockSectors(128), run(DeltaKind::RightOnly, 396, 100), c256),
            1
        );
        assert!(m.get(99));
    }

    #[test]
    fn save_load_resize() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("deltamap");
        let mut m = DeltaMap::new(21, 7);
        m.set(3);
        m.set(20);
        m.save(&p).unwrap();
        let back = DeltaMap::load(&p).unwrap().unwrap();
        assert_eq!(back, m);
        m.resize(19);
        assert!(!m.get(20) && m.get(3));
        m.resize(40);
        assert!(!m.get(20) && m.count() == 1 && m.may_differ(ChunkIndex(45)));
        std::fs::write(&p, b"{\"version\":1,\"chunks\":21,\"base_thin_id\":7}\nab").unwrap();
        assert!(DeltaMap::load(&p)
            .unwrap_err()
            .to_string()
            .contains("expected 3"));
        assert!(DeltaMap::load(&t.path().join("none")).unwrap().is_none());
    }
}
