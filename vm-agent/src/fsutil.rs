//! Durable file-system primitives: the write ordering in docs/FORMAT.md is
//! built from these.

use crate::error::{IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// fsync a directory so renames and creations inside it are durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx(format_args!("cannot fsync directory {}", dir.display()))
}

/// Write `data` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    // A leftover (or planted symlink) by the temp name is removed, not
    // opened: create_new (O_EXCL) never follows a symlink.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).ctx(format_args!("cannot remove stale {}", tmp.display()))
        }
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .ctx(format_args!("cannot create {}", tmp.display()))?;
    f.write_all(data)
        .ctx(format_args!("cannot write {}", tmp.display()))?;
    f.sync_all()
        .ctx(format_args!("cannot fsync {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path).ctx(format_args!("cannot rename {} into place", tmp.display()))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Flush every dirty page of the file system holding `dir` (one call instead
/// of an fsync per chunk file).
pub fn syncfs(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx(format_args!("cannot open {}", dir.display()))?;
    nix::unistd::syncfs(&f).map_err(|e| {
        crate::error::AgentError::io(format_args!("cannot sync {}", dir.display()), e.into())
    })
}
