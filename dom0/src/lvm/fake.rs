//! An in-memory [`Lvm`] for unit tests: thin volumes with contents, thin
//! snapshots, a metadata snapshot flag, thin_delta by comparing 64 KiB pool
//! blocks, provisioned blocks (a block is mapped once written, copied by a
//! snapshot; [`FakeLvm::discard`] unmaps), and fault injection by operation
//! name.

use super::delta::{BlockSectors, DeltaKind, DeltaRun, PoolBlock};
use super::thinmap::{DumpError, MappedBlocks};
use super::{LvInfo, Lvm, Survey};
use anyhow::{bail, Result};
use sparsebak_common::units::Bytes;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub const BLOCK: usize = 64 * 1024;

#[derive(Default)]
pub struct State {
    /// name → thin id
    pub lvs: BTreeMap<String, u64>,
    /// thin id → contents (snapshots copy)
    pub data: BTreeMap<u64, Vec<u8>>,
    pub next_id: u64,
    /// thin id → its unprovisioned blocks (none: all provisioned).
    pub unmapped: BTreeMap<u64, BTreeSet<usize>>,
    /// The device files hold 0xEE in unprovisioned blocks (which a real
    /// thin volume reads as zeros), so a test sees whether they were read.
    pub poison_unmapped: bool,
    /// mapped_blocks reports an inconsistent dump.
    pub dump_inconsistent: bool,
    pub meta_held: bool,
    /// Reservations so far: the held root is 100 + this.
    pub meta_reservations: u64,
    /// Fail the n-th call (counting from 0) of this operation.
    pub fail: Option<(&'static str, usize)>,
    pub calls: BTreeMap<&'static str, usize>,
    /// Where [`Lvm::device_path`] puts an LV's contents, made on first use.
    pub files: Option<tempfile::TempDir>,
}

pub struct FakeLvm(pub RefCell<State>);

impl Default for FakeLvm {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeLvm {
    pub fn new() -> Self {
        let mut s = State {
            next_id: 1,
            ..Default::default()
        };
        s.lvs.insert("pool".into(), 0);
        FakeLvm(RefCell::new(s))
    }
    pub fn add_volume(&self, name: &str, data: Vec<u8>) {
        let mut s = self.0.borrow_mut();
        let id = s.next_id;
        s.next_id += 1;
        s.lvs.insert(name.into(), id);
        s.data.insert(id, data);
    }
    pub fn write(&self, name: &str, off: usize, bytes: &[u8]) {
        let mut s = self.0.borrow_mut();
        let id = s.lvs[name];
        let d = s.data.get_mut(&id).unwrap();
        d[off..off + bytes.len()].copy_from_slice(bytes);
        if let Some(u) = s.unmapped.get_mut(&id) {
            for b in off / BLOCK..(off + bytes.len()).div_ceil(BLOCK) {
                u.remove(&b);
            }
        }
    }
    /// Discard whole pool blocks `[off, off + len)` (block-aligned): they
    /// read as zeros and are no longer provisioned.
    pub fn discard(&self, name: &str, off: usize, len: usize) {
        assert!(
            off.is_multiple_of(BLOCK) && len.is_multiple_of(BLOCK),
            "whole pool blocks"
        );
        let mut s = self.0.borrow_mut();
        let id = s.lvs[name];
        s.data.get_mut(&id).unwrap()[off..off + len].fill(0);
        s.unmapped
            .entry(id)
            .or_default()
            .extend(off / BLOCK..(off + len) / BLOCK);
    }
    /// Provisioned blocks of `name`.
    pub fn mapped(&self, name: &str) -> usize {
        let s = self.0.borrow();
        let id = s.lvs[name];
        let all = s.data[&id].len().div_ceil(BLOCK);
        all - s.unmapped.get(&id).map_or(0, |u| u.len())
    }
    /// What was written through [`Lvm::device_path`]'s file for `lv`
    /// (restores write there), without refreshing it from the LV.
    pub fn written(&self, vg: &str, lv: &str) -> Vec<u8> {
        let s = self.0.borrow();
        let dir = s.files.as_ref().expect("device_path was used");
        std::fs::read(dir.path().join(vg).join(lv)).expect("written device file")
    }
    pub fn contents(&self, name: &str) -> Vec<u8> {
        let s = self.0.borrow();
        s.data[&s.lvs[name]].clone()
    }
    fn op(&self, name: &'static str) -> Result<()> {
        let mut s = self.0.borrow_mut();
        let n = *s.calls.get(name).unwrap_or(&0);
        s.calls.insert(name, n + 1);
        if s.fail == Some((name, n)) {
            bail!("injected failure in {name}");
        }
        Ok(())
    }
}

impl Lvm for FakeLvm {
    fn check_thin_delta(&self) -> Result<()> {
        Ok(())
    }
    /// Writes the LV's current contents to a file and returns its path, so
    /// sources read what the fake holds. Snapshots never change, so a
    /// source opened on one reads a stable copy; writes through the path
    /// do not reach the fake.
    fn device_path(&self, vg: &str, lv: &str) -> PathBuf {
        let mut s = self.0.borrow_mut();
        if s.files.is_none() {
            s.files = Some(tempfile::tempdir().expect("temporary directory"));
        }
        let dir = s.files.as_ref().expect("made above").path().join(vg);
        std::fs::create_dir_all(&dir).expect("fake VG directory");
        let path = dir.join(lv);
        if let Some(id) = s.lvs.get(lv) {
            let mut d = s.data[id].clone();
            if s.poison_unmapped {
                for &b in s.unmapped.get(id).into_iter().flatten() {
                    let end = ((b + 1) * BLOCK).min(d.len());
                    d[b * BLOCK..end].fill(0xEE);
                }
            }
            std::fs::write(&path, &d).expect("fake LV file");
        }
        path
    }
    fn survey(&self, _vg: &str) -> Result<Survey> {
        let s = self.0.borrow();
        Ok(s.lvs
            .iter()
            .map(|(n, id)| {
                let pool = n == "pool";
                let info = LvInfo {
                    name: n.clone(),
                    attr: if pool {
                        "twi-aotz--".into()
                    } else {
                        "Vwi-a-tz--".into()
                    },
                    size: Bytes(if pool {
                        1 << 40
                    } else {
                        s.data[id].len() as u64
                    }),
                    pool: if pool { String::new() } else { "pool".into() },
                    thin_id: (!pool).then_some(*id),
                };
                (n.clone(), info)
            })
            .collect())
    }
    fn snapshot(&self, _vg: &str, origin: &str, name: &str) -> Result<()> {
        self.op("snapshot")?;
        let mut s = self.0.borrow_mut();
        if s.lvs.contains_key(name) {
            bail!("{name} exists");
        }
        let d = s.data[&s.lvs[origin]].clone();
        let id = s.next_id;
        s.next_id += 1;
        s.lvs.insert(name.into(), id);
        s.data.insert(id, d);
        if let Some(u) = s.unmapped.get(&s.lvs[origin]).cloned() {
            s.unmapped.insert(id, u);
        }
        Ok(())
    }
    fn remove(&self, _vg: &str, lv: &str) -> Result<()> {
        self.op("remove")?;
        let mut s = self.0.borrow_mut();
        if s.lvs.remove(lv).is_none() {
            bail!("{lv} does not exist");
        }
        Ok(())
    }
    fn rename(&self, _vg: &str, from: &str, to: &str) -> Result<()> {
        self.op("rename")?;
        let mut s = self.0.borrow_mut();
        let id = s
            .lvs
            .remove(from)
            .ok_or_else(|| anyhow::anyhow!("{from} does not exist"))?;
        s.lvs.insert(to.into(), id);
        Ok(())
    }
    fn create_thin(&self, _vg: &str, _pool: &str, name: &str, size: Bytes) -> Result<()> {
        self.add_volume(name, vec![0; size.0 as usize]);
        let mut s = self.0.borrow_mut();
        let id = s.lvs[name];
        let blocks = (size.0 as usize).div_ceil(BLOCK);
        s.unmapped.insert(id, (0..blocks).collect());
        Ok(())
    }
    fn resize(&self, _vg: &str, lv: &str, size: Bytes) -> Result<()> {
        let mut s = self.0.borrow_mut();
        let id = s.lvs[lv];
        let d = s.data.get_mut(&id).unwrap();
        let old = d.len().div_ceil(BLOCK);
        d.resize(size.0 as usize, 0);
        let new = d.len().div_ceil(BLOCK);
        let u = s.unmapped.entry(id).or_default();
        u.retain(|&b| b < new);
        u.extend(old..new);
        Ok(())
    }
    fn metadata_snap_root(&self, _vg: &str, _pool: &str) -> Result<Option<u64>> {
        let s = self.0.borrow();
        Ok(s.meta_held.then_some(100 + s.meta_reservations))
    }
    fn reserve_metadata_snap(&self, _vg: &str, _pool: &str) -> Result<()> {
        self.op("reserve")?;
        let mut s = self.0.borrow_mut();
        if s.meta_held {
            bail!("already reserved");
        }
        s.meta_held = true;
        s.meta_reservations += 1;
        Ok(())
    }
    fn release_metadata_snap(&self, _vg: &str, _pool: &str) -> Result<()> {
        self.0.borrow_mut().meta_held = false;
        Ok(())
    }
    fn thin_delta(
        &self,
        _vg: &str,
        _pool: &str,
        left: u64,
        right: u64,
        on_run: &mut dyn FnMut(BlockSectors, DeltaRun) -> Result<()>,
    ) -> Result<BlockSectors> {
        self.op("thin_delta")?;
        let (a, b) = {
            let s = self.0.borrow();
            if !s.meta_held {
                bail!("metadata snapshot not reserved");
            }
            (s.data[&left].clone(), s.data[&right].clone())
        };
        let dbs = BlockSectors((BLOCK / 512) as u64);
        let blocks = a.len().max(b.len()).div_ceil(BLOCK);
        for i in 0..blocks {
            let get = |d: &Vec<u8>| {
                d.get(i * BLOCK..((i + 1) * BLOCK).min(d.len()))
                    .map(|s| s.to_vec())
            };
            let kind = match (get(&a), get(&b)) {
                (Some(x), Some(y)) if x == y => continue,
                (Some(_), Some(_)) => DeltaKind::Different,
                (Some(_), None) => DeltaKind::LeftOnly,
                (None, Some(_)) => DeltaKind::RightOnly,
                (None, None) => continue,
            };
            on_run(
                dbs,
                DeltaRun {
                    kind,
                    begin: PoolBlock(i as u64),
                    length: 1,
                },
            )?;
        }
        Ok(dbs)
    }
    fn mapped_blocks(
        &self,
        _vg: &str,
        _pool: &str,
        lv: &LvInfo,
    ) -> Result<MappedBlocks, DumpError> {
        self.op("mapped_blocks").map_err(DumpError::Unavailable)?;
        let s = self.0.borrow();
        if !s.meta_held || s.dump_inconsistent {
            return Err(DumpError::Refused(anyhow::anyhow!(
                "metadata snapshot not reserved, or an inconsistent dump"
            )));
        }
        let id = lv.thin_id.expect("a thin volume");
        let mut m =
            MappedBlocks::new(BlockSectors((BLOCK / 512) as u64), lv.size).expect("small enough");
        let unmapped = s.unmapped.get(&id);
        for b in 0..s.data[&id].len().div_ceil(BLOCK) {
            if !unmapped.is_some_and(|u| u.contains(&b)) {
                m.mark(b as u64, 1).expect("inside the volume, once");
            }
        }
        Ok(m)
    }
}
