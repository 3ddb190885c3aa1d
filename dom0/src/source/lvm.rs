//! An LVM thin volume read from its `.tick` snapshot, with the change map
//! that says which chunks differ from the archive's latest session.

use super::file::FileSource;
use super::{ChangeMap, VolumeSource};
use crate::lvm::deltamap::DeltaMap;
use crate::lvm::Lvm;
use anyhow::Result;
use sparsebak_common::units::{ByteOffset, Bytes};
use std::io;

pub struct LvmSource {
    file: FileSource,
    /// `None` for a full session.
    pub map: Option<DeltaMap>,
}

impl LvmSource {
    pub fn open(lvm: &dyn Lvm, vg: &str, lv: &str, map: Option<DeltaMap>) -> Result<Self> {
        Ok(LvmSource {
            file: FileSource::open(&lvm.device_path(vg, lv))?,
            map,
        })
    }
}

impl VolumeSource for LvmSource {
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
}
