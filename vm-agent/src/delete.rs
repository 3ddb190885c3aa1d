//! Deleting the whole archive (`arch-delete`): `<dest>/sparsebak` is renamed
//! aside to `<dest>/.sparsebak-deleting` first, so a crash midway never
//! leaves a half-deleted archive under its own name, then removed. Nothing
//! else under `<dest>` is touched.

use crate::error::{AgentError, IoContext, Result};
use crate::fsutil::fsync_dir;
use crate::open_archive::Archive;
use sparsebak_common::proto::ErrorKind;
use std::fs;

/// Name the archive dir is renamed to while it is removed.
pub const TRASH_DIR: &str = ".sparsebak-deleting";

pub fn delete_archive(a: &Archive, uuid: &str) -> Result<()> {
    a.require_write()?;
    let have = &a.header()?.uuid;
    if have != uuid {
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!(
                "the archive at {} has uuid {have}, not {uuid}; refusing to delete it",
                a.dir.display()
            ),
        ));
    }
    let dest = a
        .dir
        .parent()
        .ok_or_else(|| AgentError::invalid("the archive has no parent directory"))?;
    let trash = dest.join(TRASH_DIR);
    if fs::symlink_metadata(&trash).is_ok() {
        // Left by an earlier, interrupted delete; a symlink is only unlinked.
        fs::remove_dir_all(&trash)
            .or_else(|_| fs::remove_file(&trash))
            .ctx(format_args!("cannot remove {}", trash.display()))?;
    }
    fs::rename(&a.dir, &trash).ctx(format_args!("cannot move {} aside", a.dir.display()))?;
    fsync_dir(dest)?;
    fs::remove_dir_all(&trash).ctx(format_args!("cannot remove {}", trash.display()))?;
    fsync_dir(dest)
}
