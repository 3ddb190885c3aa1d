//! A volume given as the path of an image file or block device.
//!
//! An image file's holes are found with `SEEK_DATA`/`SEEK_HOLE` and are
//! not read (holes.rs); a block device, or a file system that does not
//! support them, is read in full.

use super::{Region, VolumeSource};
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

pub struct FileSource {
    path: PathBuf,
    file: File,
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
        Ok(FileSource {
            path: path.into(),
            file,
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
