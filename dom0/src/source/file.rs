//! A volume given as the path of an image file or block device, read in full.

use super::VolumeSource;
use anyhow::{bail, Context, Result};
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

pub struct FileSource {
    path: PathBuf,
    file: File,
    size: Bytes,
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
        })
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
}
