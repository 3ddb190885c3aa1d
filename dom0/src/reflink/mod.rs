//! Image files on a reflink file system (Btrfs, XFS), such as a Qubes
//! `file-reflink` pool, with change tracking: a reflink copy of each image
//! as of its last harvest, and the extent maps of that copy and a new one
//! say which chunks changed, so a send reads what changed, not the image.
//!
//! * fiemap.rs: `FICLONE` and `FS_IOC_FIEMAP` behind [`fiemap::ReflinkFs`]
//!   (a fake for tests), extent maps walked in batches;
//! * compare.rs: two copies' extent maps into changed chunks (content
//!   compare where the maps cannot tell);
//! * volume.rs: the copies and change map of one image, crash-safe;
//! * layout.rs: Qubes' pool layout and the archive's names for it.

pub mod compare;
pub mod fiemap;
pub mod layout;
pub mod volume;

/// The directory, in the pool, that holds the copies of the archive
/// `uuid`: `<pool>/.sparsebak/<uuid>`. Per archive, so two archives of one
/// pool never take each other's copies.
pub fn snap_dir(pool: &std::path::Path, uuid: &str) -> std::path::PathBuf {
    pool.join(SNAP_DIR).join(uuid)
}

/// The hidden directory in a pool that holds sparsebak's copies.
pub const SNAP_DIR: &str = ".sparsebak";
