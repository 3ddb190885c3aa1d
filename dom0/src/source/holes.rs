//! Holes: the parts of a volume a source knows to read as zeros without
//! reading them (the holes of a sparse image file).
//!
//! A source answers one question, [`VolumeSource::region_at`]: is the byte
//! at an offset in a hole or in data, and where does that region end. Send's
//! reader asks it through a [`HoleCursor`] that walks forward with the
//! chunks and keeps only the current region, so a volume with millions of
//! extents costs a few system calls per extent and constant memory, never a
//! list of extents.
//!
//! Invariant: a hole reads as zeros. A source that cannot tell says "data"
//! (the default), and send reads it as before.

use super::VolumeSource;
use sparsebak_common::units::ByteOffset;
use std::io;

/// What lies at an offset of a volume, up to (not including) `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Reads as zeros; need not be read.
    Hole { end: ByteOffset },
    /// May hold data: read it.
    Data { end: ByteOffset },
}

impl Region {
    fn end(self) -> ByteOffset {
        match self {
            Region::Hole { end } | Region::Data { end } => end,
        }
    }
}

/// Walks a source's regions forward, one region at a time.
pub struct HoleCursor<'a> {
    src: &'a dyn VolumeSource,
    /// The region that holds `[start, region.end())`.
    current: Option<(ByteOffset, Region)>,
}

impl<'a> HoleCursor<'a> {
    pub fn new(src: &'a dyn VolumeSource) -> Self {
        HoleCursor { src, current: None }
    }

    /// Whether `[off, off + len)` lies wholly inside one hole. Offsets asked
    /// about must not go backwards (an earlier one still works, at the cost
    /// of asking the source again).
    pub fn is_hole(&mut self, off: ByteOffset, len: u64) -> io::Result<bool> {
        let region = match self.current {
            Some((start, r)) if start <= off && off < r.end() => r,
            _ => {
                let r = self.src.region_at(off)?;
                if r.end() <= off {
                    // A source must make progress; read rather than loop.
                    return Ok(false);
                }
                self.current = Some((off, r));
                r
            }
        };
        Ok(matches!(region, Region::Hole { end } if off.0 + len <= end.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mem::MemSource;
    use sparsebak_common::units::Bytes;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Alternating 1000-byte holes and data, counting the questions asked.
    struct Striped {
        size: u64,
        asked: AtomicU64,
    }

    impl VolumeSource for Striped {
        fn describe(&self) -> String {
            "striped".into()
        }
        fn size(&self) -> Bytes {
            Bytes(self.size)
        }
        fn read_at(&self, _: &mut [u8], _: ByteOffset) -> io::Result<()> {
            unreachable!("the cursor never reads")
        }
        fn region_at(&self, off: ByteOffset) -> io::Result<Region> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let end = ByteOffset(((off.0 / 1000 + 1) * 1000).min(self.size));
            Ok(if (off.0 / 1000).is_multiple_of(2) {
                Region::Hole { end }
            } else {
                Region::Data { end }
            })
        }
    }

    /// One question per region, whatever the number of chunks in it; a
    /// chunk reaching past its hole is data.
    #[test]
    fn the_cursor_asks_once_per_region() {
        let src = Striped {
            size: 10_000,
            asked: AtomicU64::new(0),
        };
        let mut c = HoleCursor::new(&src);
        let holes: Vec<bool> = (0..100)
            .map(|i| c.is_hole(ByteOffset(i * 100), 100).unwrap())
            .collect();
        let want: Vec<bool> = (0..100).map(|i| (i / 10) % 2 == 0).collect();
        assert_eq!(holes, want);
        assert_eq!(src.asked.load(Ordering::Relaxed), 10);
        // 950..1050 straddles a hole and data.
        let mut c = HoleCursor::new(&src);
        assert!(c.is_hole(ByteOffset(0), 950).unwrap());
        assert!(!c.is_hole(ByteOffset(950), 100).unwrap());
    }

    #[test]
    fn a_source_without_hole_knowledge_is_all_data() {
        let src = MemSource {
            data: vec![0; 1000],
            fail_at: None,
        };
        let mut c = HoleCursor::new(&src);
        assert!(!c.is_hole(ByteOffset(0), 100).unwrap());
        assert!(!c.is_hole(ByteOffset(900), 100).unwrap());
    }
}
