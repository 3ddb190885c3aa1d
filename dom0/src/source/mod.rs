//! Volume sources: where send reads a volume from.
//!
//! A source gives the volume's size, positioned reads, and optionally a
//! change map saying which chunks may differ from the last session (the LVM
//! thin source gets it from thin_delta, a reflink source from its copies'
//! extent maps). Without a map, send reads every
//! chunk and compares content hashes with the archive's latest state.
//! A source may also know where its holes are (a sparse image file), so
//! send skips them without reading (holes.rs).

pub mod file;
pub mod holes;
pub mod lvm;
#[cfg(test)]
pub mod mem;
pub mod reflink;

pub use holes::{HoleCursor, Region};
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex};
use std::io;

/// Which chunks may have changed since the last session.
pub trait ChangeMap: Send + Sync {
    fn may_differ(&self, idx: ChunkIndex) -> bool;
}

pub trait VolumeSource: Send + Sync {
    /// For messages: a path or device name.
    fn describe(&self) -> String;
    fn size(&self) -> Bytes;
    /// Fill `buf` from `off`; the range lies inside the volume.
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> io::Result<()>;
    /// `None`: read every chunk and compare by content.
    fn change_map(&self) -> Option<&dyn ChangeMap> {
        None
    }
    /// The region at `off` (inside the volume): a hole, which reads as
    /// zeros, or data, and where it ends. The default, for sources that
    /// cannot tell: data to the end.
    fn region_at(&self, off: ByteOffset) -> io::Result<Region> {
        let _ = off;
        Ok(Region::Data {
            end: ByteOffset(self.size().0),
        })
    }
}
