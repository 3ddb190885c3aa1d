//! The LVM thin source: survey, snapshots, the pool's metadata snapshot, and
//! thin_delta. Commands run through [`crate::process`] behind the [`Lvm`]
//! trait, so the snapshot state machine is unit-tested against a fake and
//! end-to-end tested against real pools in a VM (tests/vm/).

pub mod cli;
pub mod delta;
pub mod deltamap;
pub mod dm;
#[cfg(test)]
pub mod fake;
pub mod metasnap;
pub mod snapshots;
pub mod thinmap;

use anyhow::Result;
use delta::{BlockSectors, DeltaRun};
use sparsebak_common::units::Bytes;
use std::collections::BTreeMap;
use std::path::PathBuf;
use thinmap::{DumpError, MappedBlocks};

/// One logical volume, as `lvs` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LvInfo {
    pub name: String,
    pub attr: String,
    pub size: Bytes,
    /// The thin pool, for thin volumes.
    pub pool: String,
    pub thin_id: Option<u64>,
}

impl LvInfo {
    pub fn is_thin_volume(&self) -> bool {
        self.attr.starts_with('V')
    }
    pub fn is_thin_pool(&self) -> bool {
        self.attr.starts_with('t')
    }
}

/// LV name → info, for one VG.
pub type Survey = BTreeMap<String, LvInfo>;

pub trait Lvm {
    /// Check that the tools this trait runs (thin_delta) are usable.
    fn check_thin_delta(&self) -> Result<()>;
    /// The device node to read or write LV `lv` of `vg` through.
    fn device_path(&self, vg: &str, lv: &str) -> PathBuf;
    /// Every LV of `vg`; an error if the VG does not exist.
    fn survey(&self, vg: &str) -> Result<Survey>;
    /// A read-only, active thin snapshot without the activation-skip flag.
    fn snapshot(&self, vg: &str, origin: &str, name: &str) -> Result<()>;
    fn remove(&self, vg: &str, lv: &str) -> Result<()>;
    fn rename(&self, vg: &str, from: &str, to: &str) -> Result<()>;
    fn create_thin(&self, vg: &str, pool: &str, name: &str, size: Bytes) -> Result<()>;
    fn resize(&self, vg: &str, lv: &str, size: Bytes) -> Result<()>;
    /// The pool's held metadata root: `Some` while the metadata snapshot is
    /// reserved (by anyone), `None` when it is not.
    fn metadata_snap_root(&self, vg: &str, pool: &str) -> Result<Option<u64>>;
    fn reserve_metadata_snap(&self, vg: &str, pool: &str) -> Result<()>;
    fn release_metadata_snap(&self, vg: &str, pool: &str) -> Result<()>;
    /// Run thin_delta between two thin ids of the pool (metadata snapshot
    /// reserved), streaming its runs.
    fn thin_delta(
        &self,
        vg: &str,
        pool: &str,
        left: u64,
        right: u64,
        on_run: &mut dyn FnMut(BlockSectors, DeltaRun) -> Result<()>,
    ) -> Result<BlockSectors>;
    /// The pool blocks provisioned for thin volume `lv` of the pool, from
    /// the reserved metadata snapshot (thin_dump).
    fn mapped_blocks(&self, vg: &str, pool: &str, lv: &LvInfo) -> Result<MappedBlocks, DumpError>;
}
