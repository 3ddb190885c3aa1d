//! Where receive writes a volume: a regular file (created sparse, written
//! beside the target and renamed over it only when complete, so a failed
//! receive never destroys an existing file) or a block device (discarded
//! first, zero chunks skipped).

use anyhow::{bail, Context, Result};
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

nix::ioctl_write_ptr_bad!(blkdiscard, 0x1277, [u64; 2]);

/// Discard the first `len` bytes of block device `file` (`BLKDISCARD`);
/// `false` if the device refused.
// nix has no safe wrapper for an ioctl. Sound: the descriptor is open and
// borrowed for the call, and the argument is the `[u64; 2]` (start, length)
// the kernel reads for BLKDISCARD, alive for the call.
#[allow(unsafe_code)]
fn discard(file: &File, len: u64) -> bool {
    let range = [0u64, len];
    // SAFETY: see above.
    unsafe { blkdiscard(file.as_raw_fd(), &range) }.is_ok()
}

/// Start writeback of `file`'s dirty pages (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`), ignoring failure: it does not wait, and
/// proves nothing.
// nix has no wrapper for sync_file_range. Sound: a plain system call on a
// descriptor borrowed for the call, with no pointer arguments.
#[allow(unsafe_code)]
fn start_writeback(file: &File) {
    // SAFETY: see above.
    let _ = unsafe {
        nix::libc::sync_file_range(file.as_raw_fd(), 0, 0, nix::libc::SYNC_FILE_RANGE_WRITE)
    };
}

pub struct Output {
    file: File,
    path: PathBuf,
    /// For regular files: the temporary name renamed over `path` on commit.
    tmp: Option<PathBuf>,
    /// Zero chunks already read back as zeros (sparse file or discarded device).
    zeros_free: bool,
    /// Bytes written since writeback was last started.
    unsynced: AtomicU64,
}

/// Start writeback after this many bytes, so the page cache drains while the
/// restore goes on and the final fsync has little left to do.
const WRITEBACK_EVERY: u64 = 64 << 20;

impl Output {
    pub fn exists(path: &Path) -> bool {
        path.symlink_metadata().is_ok()
    }

    /// `thin_target`: the device is a thin LV, whose discarded blocks read
    /// back as zeros. Other devices only trust discard if they are loop
    /// devices (discard punches holes in the backing file); otherwise zero
    /// chunks are written out, because a discarded SSD or array may return
    /// stale data.
    pub fn create(path: &Path, size: Bytes, thin_target: bool) -> Result<Output> {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() => {
                use std::os::unix::fs::MetadataExt;
                let rdev = m.rdev();
                let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
                let is_loop = Path::new(&format!("/sys/dev/block/{maj}:{min}/loop")).exists();
                Self::block(path, size, thin_target || is_loop)
            }
            Ok(m) if !m.is_file() => bail!(
                "--save-to {} is neither a regular file nor a block device",
                path.display()
            ),
            _ => Self::regular(path, size),
        }
    }

    /// A qube's image in a file-reflink pool: a regular file as
    /// [`Output::create`] makes one, but readable by its owner only, as
    /// Qubes creates images (qubes/storage/reflink.py, mode 0600).
    pub fn private_file(path: &Path, size: Bytes) -> Result<Output> {
        Self::regular_mode(path, size, 0o600)
    }

    fn regular(path: &Path, size: Bytes) -> Result<Output> {
        Self::regular_mode(path, size, 0o666)
    }

    fn regular_mode(path: &Path, size: Bytes, mode: u32) -> Result<Output> {
        use std::os::unix::fs::OpenOptionsExt;
        let name = path
            .file_name()
            .with_context(|| format!("--save-to {} has no file name", path.display()))?;
        let tmp = path.with_file_name(format!(".{}.sparsebak-part", name.to_string_lossy()));
        // A leftover of a killed run may have another mode: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.set_len(size.0)
            .with_context(|| format!("cannot size {} to {} bytes", tmp.display(), size.0))?;
        Ok(Output {
            file,
            path: path.into(),
            tmp: Some(tmp),
            zeros_free: true,
            unsynced: AtomicU64::new(0),
        })
    }

    fn block(path: &Path, size: Bytes, discard_zeroes: bool) -> Result<Output> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open block device {}", path.display()))?;
        let dev_size = file
            .seek(SeekFrom::End(0))
            .with_context(|| format!("cannot size {}", path.display()))?;
        if dev_size < size.0 {
            bail!(
                "block device {} holds {dev_size} bytes, but the volume needs {}",
                path.display(),
                size.0
            );
        }
        let discarded = discard(&file, size.0);
        let zeros_free = discarded && discard_zeroes;
        Ok(Output {
            file,
            path: path.into(),
            tmp: None,
            zeros_free,
            unsynced: AtomicU64::new(0),
        })
    }

    fn write(&self, off: ByteOffset, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, off.0).with_context(|| {
            format!(
                "cannot write {} bytes at {off} of {}",
                data.len(),
                self.path.display()
            )
        })?;
        let before = self
            .unsynced
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if before + data.len() as u64 >= WRITEBACK_EVERY
            && self.unsynced.swap(0, Ordering::Relaxed) >= WRITEBACK_EVERY
        {
            // Only starts writeback (it does not wait, and proves nothing):
            // durability is still the fsync in `commit`, whose error counts.
            start_writeback(&self.file);
        }
        Ok(())
    }
}

impl crate::restore::Sink for Output {
    fn data(&self, off: ByteOffset, data: &[u8]) -> Result<()> {
        self.write(off, data)
    }

    fn zero(&self, off: ByteOffset, len: u64) -> Result<()> {
        if self.zeros_free {
            return Ok(());
        }
        self.write(off, &vec![0u8; len as usize])
    }
}

impl Output {
    /// Make the result durable and put it in place.
    pub fn commit(self) -> Result<()> {
        self.file
            .sync_all()
            .with_context(|| format!("cannot fsync {}", self.path.display()))?;
        if let Some(tmp) = &self.tmp {
            std::fs::rename(tmp, &self.path).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), self.path.display())
            })?;
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::fsutil::fsync_dir(dir)?;
            }
        }
        Ok(())
    }

    /// Drop a partial result (regular files only; a device keeps what was written).
    pub fn abandon(self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
