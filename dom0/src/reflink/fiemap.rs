//! Where a file's data lies on disk (`FS_IOC_FIEMAP`), and reflink copies
//! (`FICLONE`), behind one small trait so the comparison and the snapshot
//! state machine can be tested over a fake.
//!
//! Extents are fetched a batch at a time ([`ExtentCursor`]), so comparing two
//! files of any size and fragmentation costs constant memory.

use std::fs::File;
use std::io;

/// One extent as FIEMAP reports it: `length` bytes of the file from
/// `logical` are stored from `physical` on the device, unless `flags` say
/// the physical address means nothing ([`flags::DOUBT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub logical: u64,
    pub physical: u64,
    pub length: u64,
    pub flags: u32,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.logical.saturating_add(self.length)
    }
}

/// `fe_flags` (linux/fiemap.h).
pub mod flags {
    pub const LAST: u32 = 0x1;
    pub const UNKNOWN: u32 = 0x2;
    pub const DELALLOC: u32 = 0x4;
    pub const ENCODED: u32 = 0x8;
    pub const DATA_ENCRYPTED: u32 = 0x80;
    pub const NOT_ALIGNED: u32 = 0x100;
    pub const DATA_INLINE: u32 = 0x200;
    pub const DATA_TAIL: u32 = 0x400;
    pub const UNWRITTEN: u32 = 0x800;
    pub const MERGED: u32 = 0x1000;
    pub const SHARED: u32 = 0x2000;
    /// Flags under which equal physical addresses prove nothing (the data
    /// is not yet placed, is compressed or encrypted, or lives in metadata).
    pub const DOUBT: u32 =
        UNKNOWN | DELALLOC | ENCODED | DATA_ENCRYPTED | NOT_ALIGNED | DATA_INLINE | DATA_TAIL;
    /// Every flag this code knows; any other bit is a doubt too.
    pub const KNOWN: u32 = DOUBT | LAST | UNWRITTEN | MERGED | SHARED;
}

/// The file system operations a reflink source needs.
pub trait ReflinkFs: Send + Sync {
    /// Make `dst` (an empty file open for writing) share every extent of
    /// `src` (`FICLONE`).
    fn clone_file(&self, src: &File, dst: &File) -> io::Result<()>;
    /// At most `max` extents of `f` that end after `from`, in logical
    /// order; none when there are no more.
    fn extents(&self, f: &File, from: u64, max: usize) -> io::Result<Vec<Extent>>;
}

/// The real thing: `FICLONE` through rustix, `FS_IOC_FIEMAP` through nix.
pub struct Kernel;

/// Extents fetched per FIEMAP call.
const BATCH: usize = 256;

#[repr(C)]
struct FiemapHead {
    fm_start: u64,
    fm_length: u64,
    fm_flags: u32,
    fm_mapped_extents: u32,
    fm_extent_count: u32,
    fm_reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct RawExtent {
    fe_logical: u64,
    fe_physical: u64,
    fe_length: u64,
    fe_reserved64: [u64; 2],
    fe_flags: u32,
    fe_reserved: [u32; 3],
}

/// `struct fiemap` followed by room for `BATCH` extents, as the kernel
/// expects it (the request number carries only the head's size).
#[repr(C)]
struct FiemapBuf {
    head: FiemapHead,
    extents: [RawExtent; BATCH],
}

const FIEMAP_FLAG_SYNC: u32 = 0x1;

nix::ioctl_readwrite_bad!(
    fs_ioc_fiemap,
    nix::request_code_readwrite!(b'f', 11, std::mem::size_of::<FiemapHead>()),
    FiemapBuf
);

/// One FIEMAP call from `from`, syncing the file first.
// nix has no safe wrapper for an ioctl. Sound: the descriptor is open and
// borrowed for the call; the argument is a `struct fiemap` whose
// `fm_extent_count` (BATCH) is the number of `struct fiemap_extent` that
// follow it in the same allocation, which is all the kernel writes.
#[allow(unsafe_code)]
fn fiemap_call(f: &File, from: u64) -> io::Result<Vec<Extent>> {
    use std::os::fd::AsRawFd;
    let mut buf = Box::new(FiemapBuf {
        head: FiemapHead {
            fm_start: from,
            fm_length: u64::MAX - from,
            fm_flags: FIEMAP_FLAG_SYNC,
            fm_mapped_extents: 0,
            fm_extent_count: BATCH as u32,
            fm_reserved: 0,
        },
        extents: [RawExtent::default(); BATCH],
    });
    // SAFETY: see above.
    unsafe { fs_ioc_fiemap(f.as_raw_fd(), &mut *buf) }.map_err(io::Error::from)?;
    let n = (buf.head.fm_mapped_extents as usize).min(BATCH);
    Ok(buf.extents[..n]
        .iter()
        .map(|e| Extent {
            logical: e.fe_logical,
            physical: e.fe_physical,
            length: e.fe_length,
            flags: e.fe_flags,
        })
        .collect())
}

impl ReflinkFs for Kernel {
    fn clone_file(&self, src: &File, dst: &File) -> io::Result<()> {
        rustix::fs::ioctl_ficlone(dst, src).map_err(io::Error::from)
    }
    fn extents(&self, f: &File, from: u64, max: usize) -> io::Result<Vec<Extent>> {
        let mut v = fiemap_call(f, from)?;
        v.truncate(max);
        Ok(v)
    }
}

/// Walks one file's extents forward in batches: what lies at an offset,
/// and up to where.
pub struct ExtentCursor<'a> {
    fs: &'a dyn ReflinkFs,
    file: &'a File,
    /// Fetched extents not yet passed, in logical order.
    buf: std::collections::VecDeque<Extent>,
    /// Where the next fetch starts; `None` once the last extent was seen.
    next: Option<u64>,
}

/// What a file holds from an offset up to an end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A hole or an unwritten (preallocated) extent: reads as zeros.
    Zeros,
    /// Data stored at `physical` (the address of this offset).
    Data { physical: u64 },
    /// An extent whose address proves nothing ([`flags::DOUBT`]).
    Doubt,
}

impl<'a> ExtentCursor<'a> {
    pub fn new(fs: &'a dyn ReflinkFs, file: &'a File) -> Self {
        ExtentCursor {
            fs,
            file,
            buf: Default::default(),
            next: Some(0),
        }
    }

    /// Make the first buffered extent one that ends after `x`, if any.
    fn settle(&mut self, x: u64) -> io::Result<()> {
        loop {
            while self.buf.front().is_some_and(|e| e.end() <= x) {
                self.buf.pop_front();
            }
            if !self.buf.is_empty() {
                return Ok(());
            }
            let Some(from) = self.next else {
                return Ok(());
            };
            let got = self.fs.extents(self.file, from.max(x), BATCH)?;
            let Some(last) = got.last() else {
                self.next = None;
                return Ok(());
            };
            let end = last.end();
            if end <= from.max(x) {
                return Err(io::Error::other(format!(
                    "FIEMAP made no progress at offset {}",
                    from.max(x)
                )));
            }
            self.next = (last.flags & flags::LAST == 0).then_some(end);
            // Extents must come in order without overlap; anything else
            // is refused rather than guessed at.
            let mut prev = self.buf.back().map_or(0, |e| e.end());
            for e in &got {
                if e.length == 0 || e.logical < prev {
                    return Err(io::Error::other(format!(
                        "FIEMAP returned overlapping or empty extents at offset {}",
                        e.logical
                    )));
                }
                prev = e.end();
            }
            self.buf.extend(got);
        }
    }

    /// What lies at `x` and where that ends (`u64::MAX`: to the end of the
    /// file). Offsets asked must not go backwards.
    pub fn at(&mut self, x: u64) -> io::Result<(Piece, u64)> {
        self.settle(x)?;
        let Some(e) = self.buf.front() else {
            return Ok((Piece::Zeros, u64::MAX));
        };
        if x < e.logical {
            return Ok((Piece::Zeros, e.logical));
        }
        let piece = if e.flags & flags::DOUBT != 0 || e.flags & !flags::KNOWN != 0 {
            Piece::Doubt
        } else if e.flags & flags::UNWRITTEN != 0 {
            Piece::Zeros
        } else {
            Piece::Data {
                physical: e.physical.wrapping_add(x - e.logical),
            }
        };
        Ok((piece, e.end()))
    }
}

#[cfg(test)]
pub mod fake {
    //! A stand-in for a reflink file system. Extent maps are given by the
    //! test, or else derived from content: each non-zero 4 KiB block is an
    //! extent whose "physical address" is a hash of its bytes, zero blocks
    //! are holes. That keeps the one property the comparison relies on (a
    //! block stored at the same address holds the same bytes); clone copies
    //! the bytes.
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeFs {
        pub maps: Mutex<HashMap<u64, Vec<Extent>>>,
        pub calls: Mutex<u64>,
        /// clone_file fails with this errno (EOPNOTSUPP: no reflinks).
        pub clone_fails: Option<i32>,
    }

    impl FakeFs {
        pub fn set(&self, f: &File, extents: Vec<Extent>) {
            let ino = f.metadata().unwrap().ino();
            self.maps.lock().unwrap().insert(ino, extents);
        }
    }

    fn from_content(f: &File) -> io::Result<Vec<Extent>> {
        let len = f.metadata()?.len();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 4096];
        let mut off = 0;
        while off < len {
            let n = (len - off).min(4096) as usize;
            f.read_exact_at(&mut buf[..n], off)?;
            if buf[..n].iter().any(|&b| b != 0) {
                let h = buf[..n].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                out.push(Extent {
                    logical: off,
                    physical: h & !0xfff,
                    length: 4096,
                    flags: 0,
                });
            }
            off += 4096;
        }
        Ok(out)
    }

    impl ReflinkFs for FakeFs {
        fn clone_file(&self, src: &File, dst: &File) -> io::Result<()> {
            if let Some(e) = self.clone_fails {
                return Err(io::Error::from_raw_os_error(e));
            }
            let mut s = src;
            let mut d = dst;
            io::copy(&mut s, &mut d)?;
            let ext = self
                .maps
                .lock()
                .unwrap()
                .get(&src.metadata()?.ino())
                .cloned();
            if let Some(ext) = ext {
                self.set(dst, ext);
            }
            Ok(())
        }
        fn extents(&self, f: &File, from: u64, max: usize) -> io::Result<Vec<Extent>> {
            *self.calls.lock().unwrap() += 1;
            let ino = f.metadata()?.ino();
            let given = self.maps.lock().unwrap().get(&ino).cloned();
            let all = match given {
                Some(v) => v,
                None => from_content(f)?,
            };
            let mut v: Vec<Extent> = all.into_iter().filter(|e| e.end() > from).collect();
            let more = v.len() > max;
            v.truncate(max);
            if !more {
                if let Some(l) = v.last_mut() {
                    l.flags |= flags::LAST;
                }
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeFs;
    use super::*;

    fn ext(logical: u64, physical: u64, length: u64, flags: u32) -> Extent {
        Extent {
            logical,
            physical,
            length,
            flags,
        }
    }

    #[test]
    fn the_cursor_walks_holes_data_and_doubts_in_batches() {
        let fs = FakeFs::default();
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        // 600 one-block extents: more than one batch.
        let mut v: Vec<Extent> = (0..600).map(|i| ext(i * 8192, 1000 + i, 4096, 0)).collect();
        v[3].flags = flags::ENCODED;
        v[4].flags = flags::UNWRITTEN | flags::SHARED;
        v[5].flags = 0x8000_0000; // unknown bit
        fs.set(&f, v);
        let mut c = ExtentCursor::new(&fs, &f);
        assert_eq!(c.at(0).unwrap(), (Piece::Data { physical: 1000 }, 4096));
        assert_eq!(c.at(100).unwrap(), (Piece::Data { physical: 1100 }, 4096));
        assert_eq!(c.at(4096).unwrap(), (Piece::Zeros, 8192));
        assert_eq!(c.at(3 * 8192).unwrap().0, Piece::Doubt);
        assert_eq!(c.at(4 * 8192).unwrap().0, Piece::Zeros);
        assert_eq!(c.at(5 * 8192).unwrap().0, Piece::Doubt);
        assert_eq!(
            c.at(599 * 8192 + 1).unwrap(),
            (Piece::Data { physical: 1599 + 1 }, 599 * 8192 + 4096)
        );
        assert_eq!(c.at(599 * 8192 + 4096).unwrap(), (Piece::Zeros, u64::MAX));
        // One batch from 0, then the jump fetches from the new offset.
        assert_eq!(*fs.calls.lock().unwrap(), 2);
    }

    #[test]
    fn overlapping_extents_are_refused() {
        let fs = FakeFs::default();
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        fs.set(&f, vec![ext(0, 0, 8192, 0), ext(4096, 9, 4096, 0)]);
        let e = ExtentCursor::new(&fs, &f).at(0).unwrap_err();
        assert!(e.to_string().contains("overlapping"), "{e}");
    }
}
