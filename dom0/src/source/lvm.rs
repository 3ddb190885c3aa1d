//! An LVM thin volume read from its `.tick` snapshot, with the change map
//! that says which chunks differ from the archive's latest session, and,
//! when the whole volume is read, the map of the blocks the pool has
//! provisioned: the others read as zeros, so they are holes (holes.rs).

use super::file::FileSource;
use super::{ChangeMap, Region, VolumeSource};
use crate::lvm::deltamap::DeltaMap;
use crate::lvm::thinmap::MappedBlocks;
use crate::lvm::Lvm;
use anyhow::Result;
use sparsebak_common::units::{ByteOffset, Bytes};
use std::io;

pub struct LvmSource {
    file: FileSource,
    /// `None` for a full session.
    pub map: Option<DeltaMap>,
    /// The provisioned pool blocks; `None`: all may hold data.
    mapped: Option<MappedBlocks>,
}

impl LvmSource {
    pub fn open(lvm: &dyn Lvm, vg: &str, lv: &str, map: Option<DeltaMap>) -> Result<Self> {
        Ok(LvmSource {
            file: FileSource::open(&lvm.device_path(vg, lv))?,
            map,
            mapped: None,
        })
    }

    /// Report the blocks `mapped` leaves out as holes.
    pub fn with_mapped(mut self, mapped: Option<MappedBlocks>) -> Self {
        self.mapped = mapped;
        self
    }
}

/// The region at `off` of a volume of `size` whose provisioned blocks are
/// `m`. Past the map's blocks (the device grew?) is data: read it.
fn mapped_region(m: &MappedBlocks, off: ByteOffset, size: Bytes) -> Region {
    let bs = m.block_bytes();
    let b = off.0 / bs;
    if b >= m.blocks() {
        return Region::Data {
            end: ByteOffset(size.0),
        };
    }
    let (mapped, end_block) = m.run_at(b);
    let end = ByteOffset(end_block.saturating_mul(bs).min(size.0));
    if mapped {
        Region::Data { end }
    } else {
        Region::Hole { end }
    }
}

impl VolumeSource for LvmSource {
    fn describe(&self) -> String {
        self.file.describe()
    }
    fn size(&self) -> Bytes {
        self.file.size()
    }
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> io::Result<()> {
        self.file.read_at(buf, off)
    }
    fn change_map(&self) -> Option<&dyn ChangeMap> {
        self.map.as_ref().map(|m| m as &dyn ChangeMap)
    }
    fn region_at(&self, off: ByteOffset) -> io::Result<Region> {
        Ok(match &self.mapped {
            Some(m) => mapped_region(m, off, self.size()),
            None => Region::Data {
                end: ByteOffset(self.size().0),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::delta::BlockSectors;

    #[test]
    fn unprovisioned_blocks_are_holes() {
        const B: u64 = 64 << 10;
        let size = Bytes(10 * B + 100);
        let mut m = MappedBlocks::new(BlockSectors(128), size).unwrap();
        m.mark(2, 3).unwrap();
        m.mark(10, 1).unwrap();
        let at = |o| mapped_region(&m, ByteOffset(o), size);
        assert_eq!(
            at(0),
            Region::Hole {
                end: ByteOffset(2 * B)
            }
        );
        assert_eq!(
            at(B + 7),
            Region::Hole {
                end: ByteOffset(2 * B)
            }
        );
        assert_eq!(
            at(2 * B),
            Region::Data {
                end: ByteOffset(5 * B)
            }
        );
        assert_eq!(
            at(5 * B),
            Region::Hole {
                end: ByteOffset(10 * B)
            }
        );
        assert_eq!(
            at(10 * B),
            Region::Data {
                end: ByteOffset(size.0)
            }
        );
        // a device bigger than the map: the rest is data
        let bigger = Bytes(20 * B);
        let m = MappedBlocks::new(BlockSectors(128), Bytes(4 * B)).unwrap();
        assert_eq!(
            mapped_region(&m, ByteOffset(4 * B), bigger),
            Region::Data {
                end: ByteOffset(bigger.0)
            }
        );
    }
}
