//! An image of a reflink source read from its `.tick` copy, with the
//! change map saying which chunks differ from the archive's latest session
//! (crate::reflink). Holes of the copy (a reflink copy keeps the image's)
//! are found as in any image file.

use super::file::FileSource;
use super::{ChangeMap, Region, VolumeSource};
use crate::lvm::deltamap::DeltaMap;
use anyhow::Result;
use sparsebak_common::units::{ByteOffset, Bytes};
use std::io;
use std::path::Path;

pub struct ReflinkSource {
    file: FileSource,
    /// `None` for a full session.
    map: Option<DeltaMap>,
}

impl ReflinkSource {
    pub fn open(tick: &Path, map: Option<DeltaMap>) -> Result<Self> {
        Ok(ReflinkSource {
            file: FileSource::open(tick)?,
            map,
        })
    }
}

impl VolumeSource for ReflinkSource {
    fn describe(&self) -> String {
        self.file.describe()
    }
    fn size(&self) -> Bytes {
        self.file.size()
    }
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> io::Result<()> {
        self.file.read_at(buf, off)
    }
    fn change_map(&self) -> Option<&dyn ChangeMap> {
        self.map.as_ref().map(|m| m as &dyn ChangeMap)
    }
    fn region_at(&self, off: ByteOffset) -> io::Result<Region> {
        self.file.region_at(off)
    }
}
