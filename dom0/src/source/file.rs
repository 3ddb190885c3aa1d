//! A volume given as the path of an image file or block device.
//!
//! An image file's holes are found with `SEEK_DATA`/`SEEK_HOLE` and are
//! not read (holes.rs); a block device, or a file system that does not
//! support them, is read in full.
//!
//! Reads whose buffer, offset and length are 4 KiB-aligned (send's batch
//! reads, send/reader.rs) go through a second descriptor opened with
//! `O_DIRECT`: the device writes straight into the buffer, with no copy out
//! of the page cache (a tenth of a full send's CPU) and without filling
//! dom0's small page cache with a volume it reads once. Any other read, and
//! every read once `O_DIRECT` failed (a file system without it, an odd
//! block size, a short file), uses the ordinary descriptor, with the same
//! result and errors.

use super::{Region, VolumeSource};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Alignment of buffer, offset and length for an `O_DIRECT` read.
const DIRECT_ALIGN: u64 = 4096;

pub struct FileSource {
    path: PathBuf,
    file: File,
    /// The same file opened with `O_DIRECT`, if the file system allows it.
    direct: Option<File>,
    /// Cleared when an `O_DIRECT` read fails: from then on every read is buffered.
    direct_ok: AtomicBool,
    size: Bytes,
    /// A regular file: ask the file system for its holes.
    sparse: bool,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path)
            .with_context(|| format!("cannot open volume source {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        let ft = meta.file_type();
        let size = if ft.is_block_device() {
            file.seek(SeekFrom::End(0))
                .with_context(|| format!("cannot size {}", path.display()))?
        } else if ft.is_file() {
            meta.len()
        } else {
            bail!(
                "volume source {} is neither a regular file nor a block device",
                path.display()
            );
        };
        let direct = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .ok();
        Ok(FileSource {
            path: path.into(),
            file,
            direct_ok: AtomicBool::new(direct.is_some()),
            direct,
            size: Bytes(size),
            sparse: ft.is_file(),
        })
    }

    /// The region at `off` from `SEEK_DATA`/`SEEK_HOLE`. Only one region
    /// is looked up: the caller walks forward (holes.rs).
    fn file_region_at(&self, off: ByteOffset) -> io::Result<Region> {
        let all_data = Region::Data {
            end: ByteOffset(self.size.0),
        };
        let Ok(at) = i64::try_from(off.0) else {
            return Ok(all_data);
        };
        let clamp = |p: i64| ByteOffset((p as u64).min(self.size.0));
        match lseek(&self.file, at, Whence::SeekData) {
            Ok(data) if data > at => Ok(Region::Hole { end: clamp(data) }),
            Ok(_) => match lseek(&self.file, at, Whence::SeekHole) {
                Ok(hole) => Ok(Region::Data { end: clamp(hole) }),
                Err(e) => self.seek_failed(e, off),
            },
            // No data from `off` to the end of the file.
            Err(Errno::ENXIO) => self.no_data_after(off),
            Err(e) => self.seek_failed(e, off),
        }
    }

    /// `SEEK_DATA` found no data at or after `off`: the rest is a hole,
    /// unless the file shrank since it was opened; then read on, so the read
    /// fails as it would without holes.
    fn no_data_after(&self, off: ByteOffset) -> io::Result<Region> {
        let now = self.file.metadata()?.len();
        let end = ByteOffset(self.size.0);
        Ok(if now >= self.size.0 && off.0 < now {
            Region::Hole { end }
        } else {
            Region::Data { end }
        })
    }

    /// EINVAL: this file system cannot tell; ENXIO from `SEEK_HOLE`: the
    /// file shrank under us. Read everything from here, as without holes.
    /// Anything else is an error of the source.
    fn seek_failed(&self, e: Errno, off: ByteOffset) -> io::Result<Region> {
        if e == Errno::EINVAL || e == Errno::ENXIO {
            return Ok(Region::Data {
                end: ByteOffset(self.size.0),
            });
        }
        Err(io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "cannot find the data of {} at {off}: {e}",
                self.path.display()
            ),
        ))
    }
}

impl VolumeSource for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
    fn size(&self) -> Bytes {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> io::Result<()> {
        if let Some(d) = self.direct.as_ref() {
            let aligned =
                (buf.as_ptr() as u64 | buf.len() as u64 | off.0).is_multiple_of(DIRECT_ALIGN);
            if aligned && self.direct_ok.load(Ordering::Relaxed) {
                if d.read_exact_at(buf, off.0).is_ok() {
                    return Ok(());
                }
                self.direct_ok.store(false, Ordering::Relaxed);
            }
        }
        self.file.read_exact_at(buf, off.0)
    }
    fn region_at(&self, off: ByteOffset) -> io::Result<Region> {
        if !self.sparse {
            return Ok(Region::Data {
                end: ByteOffset(self.size.0),
            });
        }
        self.file_region_at(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    const K: u64 = 1024;

    /// A sparse file of `size` bytes with 0xab written at each `(off, len)`.
    fn sparse_file(dir: &Path, size: u64, data: &[(u64, u64)]) -> PathBuf {
        let p = dir.join("img");
        let f = File::create(&p).unwrap();
        f.set_len(size).unwrap();
        for &(off, len) in data {
            f.write_all_at(&vec![0xab; len as usize], off).unwrap();
        }
        p
    }

    /// Every region from 0 to the end, as (kind, end) pairs.
    fn regions(src: &FileSource) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        let mut off = 0;
        while off < src.size().0 {
            let (kind, end) = match src.region_at(ByteOffset(off)).unwrap() {
                Region::Hole { end } => ("hole", end.0),
                Region::Data { end } => ("data", end.0),
            };
            assert!(end > off, "no progress at {off}");
            out.push((kind, end));
            off = end;
        }
        out
    }

    #[test]
    fn holes_at_the_start_in_the_middle_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let size = 1024 * K + 1000; // not a multiple of any block size
        let p = sparse_file(dir.path(), size, &[(256 * K, 64 * K), (640 * K, 4 * K)]);
        let src = FileSource::open(&p).unwrap();
        assert_eq!(
            regions(&src),
            [
                ("hole", 256 * K),
                ("data", 320 * K),
                ("hole", 640 * K),
                ("data", 644 * K),
                ("hole", size)
            ]
        );
    }

    #[test]
    fn data_up_to_an_odd_end_and_a_file_without_data() {
        let dir = tempfile::tempdir().unwrap();
        let size = 512 * K + 777;
        let p = sparse_file(dir.path(), size, &[(size - 500, 500)]);
        let src = FileSource::open(&p).unwrap();
        let r = regions(&src);
        assert_eq!(r.last(), Some(&("data", size)), "{r:?}");
        assert_eq!(r[0].0, "hole", "{r:?}");

        let empty = sparse_file(dir.path(), size, &[]);
        assert_eq!(
            regions(&FileSource::open(&empty).unwrap()),
            [("hole", size)]
        );
    }

    #[test]
    fn a_punched_hole_is_a_hole() {
        use nix::fcntl::{fallocate, FallocateFlags};
        let dir = tempfile::tempdir().unwrap();
        let p = sparse_file(dir.path(), 256 * K, &[(0, 256 * K)]);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(&f, punch, 64 * K as i64, 64 * K as i64).unwrap();
        let src = FileSource::open(&p).unwrap();
        assert_eq!(
            regions(&src),
            [("data", 64 * K), ("hole", 128 * K), ("data", 256 * K)]
        );
    }

    /// A file that shrank after it was opened is read on, so the read fails
    /// as it would without holes, instead of passing for zeros.
    #[test]
    fn a_file_that_shrank_is_not_taken_for_a_hole() {
        let dir = tempfile::tempdir().unwrap();
        let p = sparse_file(dir.path(), 1024 * K, &[(0, 4 * K)]);
        let src = FileSource::open(&p).unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(512 * K)
            .unwrap();
        assert_eq!(
            src.region_at(ByteOffset(768 * K)).unwrap(),
            Region::Data {
                end: ByteOffset(1024 * K)
            }
        );
        let mut buf = vec![0; 4096];
        assert!(src.read_at(&mut buf, ByteOffset(768 * K)).is_err());
    }

    /// A file system without SEEK_DATA answers EINVAL: everything is data.
    #[test]
    fn unsupported_seek_data_means_all_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = sparse_file(dir.path(), 128 * K, &[]);
        let src = FileSource::open(&p).unwrap();
        let all = Region::Data {
            end: ByteOffset(128 * K),
        };
        assert_eq!(src.seek_failed(Errno::EINVAL, ByteOffset(0)).unwrap(), all);
        let e = src.seek_failed(Errno::EIO, ByteOffset(4096)).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "cannot find the data of {} at 0x1000",
                p.display()
            )),
            "{e}"
        );
    }
}
