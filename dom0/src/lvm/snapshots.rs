//! The snapshot pair and change map of one LVM thin volume.
//!
//! `<vol>.tick` is the state the archive plus the change map describe;
//! `<vol>.tock` exists only while a run harvests changes. Each step keeps the
//! invariant of [`DeltaMap`] true on disk, so an interrupted run — at any
//! step, including between removing tick and renaming tock — is completed by
//! the next one without manual repair:
//!
//! 1. create tock;
//! 2. reserve the pool's metadata snapshot, thin_delta tick→tock into the
//!    map, release (also on error and on SIGINT/SIGTERM/SIGHUP; one left
//!    reserved by a killed run is released by the next, see [`MetaSnap`]);
//! 3. save the map with base = tock's thin id (durable, atomic);
//! 4. remove tick, rename tock → tick.
//!
//! Recovery at the start of every run: a tock whose thin id is the map's
//! base is a rotation to finish (step 4); any other tock is stale and
//! removed. If the snapshots and the map no longer match (removed by hand,
//! metadata lost), every chunk is flagged: the next session re-reads the
//! whole volume, which is slow but never misses a change.
//!
//! A session that reads the whole volume (the first, or a resync) reads
//! only the blocks the pool has provisioned for tick, from `thin_dump` of
//! the metadata snapshot ([`super::thinmap`]): the rest reads as zeros.
//! Without that map (the tool failed), it reads everything, with a warning.

use super::deltamap::DeltaMap;
use super::metasnap::MetaSnap;
use super::thinmap::{DumpError, MappedBlocks};
use super::{LvInfo, Lvm, Survey};
use anyhow::{anyhow, bail, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::ChunkSize;
use std::path::PathBuf;

pub struct ThinVolume<'a> {
    pub lvm: &'a dyn Lvm,
    pub vg: &'a str,
    pub pool: &'a str,
    pub vol: &'a VolName,
    /// The origin LV: the volume's name, or a qube volume's LV
    /// ([`crate::config::VolumeEntry::lv`]). Snapshots are named after
    /// `vol`, so they survive the LV being renamed.
    pub lv: &'a str,
    pub map_path: PathBuf,
    /// The archive's marker of a reserved metadata snapshot ([`MetaSnap`]).
    pub metasnap_marker: PathBuf,
    pub cs: ChunkSize,
}

/// What a harvest leaves for send.
#[derive(Debug)]
pub enum Prepared {
    /// The volume does not exist (yet).
    Missing,
    /// monitor before the first send: nothing to track yet.
    NotStarted,
    /// First session: read everything from `tick` (only its provisioned
    /// blocks, when `mapped` says which).
    Full {
        tick: LvInfo,
        map: DeltaMap,
        mapped: Option<MappedBlocks>,
    },
    /// Read the chunks flagged in `map` from `tick` (a resync: all of them,
    /// only the provisioned blocks when `mapped` is known).
    Incremental {
        tick: LvInfo,
        map: DeltaMap,
        mapped: Option<MappedBlocks>,
        harvested: u64,
        resync: bool,
    },
}

impl<'a> ThinVolume<'a> {
    pub fn tick(&self) -> String {
        format!("{}.tick", self.vol)
    }
    pub fn tock(&self) -> String {
        format!("{}.tock", self.vol)
    }

    fn survey(&self) -> Result<Survey> {
        self.lvm.survey(self.vg)
    }

    fn thin_id(&self, lv: &LvInfo) -> Result<u64> {
        lv.thin_id
            .ok_or_else(|| anyhow!("{}/{} has no thin id", self.vg, lv.name))
    }

    /// The origin volume, checked to be a thin volume of the configured pool.
    pub fn origin(&self, s: &Survey) -> Result<Option<LvInfo>> {
        if !s.get(self.pool).is_some_and(|p| p.is_thin_pool()) {
            bail!(
                "thin pool {}/{} does not exist (volume {})",
                self.vg,
                self.pool,
                self.vol
            );
        }
        let Some(lv) = s.get(self.lv) else {
            return Ok(None);
        };
        if !lv.is_thin_volume() || lv.pool != self.pool {
            bail!(
                "volume {}/{} is not a thin volume in pool {}",
                self.vg,
                self.lv,
                self.pool
            );
        }
        Ok(Some(lv.clone()))
    }

    /// Finish or undo an interrupted rotation.
    fn recover(&self, map: Option<&DeltaMap>) -> Result<Survey> {
        let s = self.survey()?;
        if let Some(tock) = s.get(&self.tock()) {
            if map.is_some_and(|m| Some(m.base_thin_id) == tock.thin_id) {
                log::info!("{}: completing an interrupted snapshot rotation", self.vol);
                if s.contains_key(&self.tick()) {
                    self.lvm.remove(self.vg, &self.tick())?;
                }
                self.lvm.rename(self.vg, &self.tock(), &self.tick())?;
            } else {
                self.lvm.remove(self.vg, &self.tock())?;
            }
            return self.survey();
        }
        Ok(s)
    }

    fn fresh_tick(&self, s: &Survey) -> Result<LvInfo> {
        if s.contains_key(&self.tick()) {
            self.lvm.remove(self.vg, &self.tick())?;
        }
        self.lvm.snapshot(self.vg, self.lv, &self.tick())?;
        self.survey()?
            .remove(&self.tick())
            .ok_or_else(|| anyhow!("snapshot {}/{} vanished", self.vg, self.tick()))
    }

    /// A new tick and an empty map based on it (diff --remap's baseline).
    pub fn fresh_baseline(&self) -> Result<(LvInfo, DeltaMap)> {
        let s = self.recover(DeltaMap::load(&self.map_path)?.as_ref())?;
        let tick = self.fresh_tick(&s)?;
        let map = DeltaMap::new(self.cs.count(tick.size), self.thin_id(&tick)?);
        map.save(&self.map_path)?;
        Ok((tick, map))
    }

    /// Bring the map up to date and rotate the snapshots (monitor, and the
    /// first half of send).
    pub fn harvest(&self, has_sessions: bool, for_send: bool) -> Result<Prepared> {
        let map = DeltaMap::load(&self.map_path)?;
        let s = self.recover(map.as_ref())?;
        let Some(origin) = self.origin(&s)? else {
            return Ok(Prepared::Missing);
        };
        let chunks = self.cs.count(origin.size);
        if !has_sessions {
            if !for_send {
                return Ok(Prepared::NotStarted);
            }
            let tick = self.fresh_tick(&s)?;
            let map = DeltaMap::new(self.cs.count(tick.size), self.thin_id(&tick)?);
            map.save(&self.map_path)?;
            let mapped = self.provisioned(&tick)?;
            return Ok(Prepared::Full { tick, map, mapped });
        }
        let tick = s.get(&self.tick()).cloned();
        let (tick, mut map) = match (tick, map) {
            (Some(t), Some(m)) if t.thin_id == Some(m.base_thin_id) => (t, m),
            (t, m) => return self.resync(&s, t.is_some(), m.is_some(), chunks, for_send),
        };
        self.lvm.snapshot(self.vg, self.lv, &self.tock())?;
        let res = self.delta_into(&tick, &mut map);
        let harvested = match res {
            Ok(n) => n,
            Err(e) => {
                let _ = self.lvm.remove(self.vg, &self.tock());
                return Err(e);
            }
        };
        self.lvm.remove(self.vg, &self.tick())?;
        self.lvm.rename(self.vg, &self.tock(), &self.tick())?;
        let tick = self
            .survey()?
            .remove(&self.tick())
            .ok_or_else(|| anyhow!("snapshot {}/{} vanished", self.vg, self.tick()))?;
        Ok(Prepared::Incremental {
            tick,
            map,
            mapped: None,
            harvested,
            resync: false,
        })
    }

    /// The snapshots and the map do not match: a fresh tick and every chunk
    /// flagged.
    fn resync(
        &self,
        s: &Survey,
        has_tick: bool,
        has_map: bool,
        chunks: u64,
        for_send: bool,
    ) -> Result<Prepared> {
        log::warn!(
            "{}: {} do not match; the next session re-reads the whole volume",
            self.vol,
            match (has_tick, has_map) {
                (false, _) => "snapshot .tick is missing, so the snapshots and the change map",
                (true, false) => "the change map is missing, so the snapshots and the map",
                (true, true) => "the change map and snapshot .tick",
            }
        );
        let tick = self.fresh_tick(s)?;
        let map = DeltaMap::all(self.cs.count(tick.size), self.thin_id(&tick)?);
        map.save(&self.map_path)?;
        let mapped = if for_send {
            self.provisioned(&tick)?
        } else {
            None
        };
        Ok(Prepared::Incremental {
            tick,
            harvested: chunks,
            map,
            mapped,
            resync: true,
        })
    }

    /// The blocks the pool has provisioned for `tick`, from the metadata
    /// snapshot; `None` (read everything) if the tools cannot say, an error
    /// if what they say is inconsistent.
    fn provisioned(&self, tick: &LvInfo) -> Result<Option<MappedBlocks>> {
        let unavailable = |e: anyhow::Error| {
            log::warn!(
                "{}: cannot tell which blocks of {}/{} the pool has provisioned ({e:#}); \
                 reading the whole volume",
                self.vol,
                self.vg,
                tick.name
            );
            Ok(None)
        };
        // A first send never needed the metadata snapshot: if another tool
        // holds it, read everything rather than fail.
        let snap = match MetaSnap::reserve(self.lvm, self.vg, self.pool, &self.metasnap_marker) {
            Ok(snap) => snap,
            Err(e) => return unavailable(e),
        };
        let res = self.lvm.mapped_blocks(self.vg, self.pool, tick);
        snap.release()?;
        match res {
            Ok(m) => Ok(Some(m)),
            Err(DumpError::Unavailable(e)) => unavailable(e),
            Err(DumpError::Refused(e)) => Err(e.context(format!(
                "the thin pool's map of the provisioned blocks of volume {} ({}/{}) is inconsistent",
                self.vol, self.vg, tick.name
            ))),
        }
    }

    /// Steps 2 and 3: harvest tick→tock into the map and save it with base = tock.
    fn delta_into(&self, tick: &LvInfo, map: &mut DeltaMap) -> Result<u64> {
        let tock = self
            .survey()?
            .remove(&self.tock())
            .ok_or_else(|| anyhow!("snapshot {}/{} vanished", self.vg, self.tock()))?;
        let (l, r) = (self.thin_id(tick)?, self.thin_id(&tock)?);
        map.resize(self.cs.count(tock.size));
        let snap = MetaSnap::reserve(self.lvm, self.vg, self.pool, &self.metasnap_marker)?;
        let mut n = 0;
        let cs = self.cs;
        let res = self
            .lvm
            .thin_delta(self.vg, self.pool, l, r, &mut |dbs, run| {
                n += map.mark(dbs, run, cs);
                Ok(())
            });
        snap.release()?;
        res?;
        map.base_thin_id = r;
        map.save(&self.map_path)?;
        Ok(n)
    }

    /// After a session is committed (or nothing needed sending): the archive
    /// now equals tick, so the map is cleared.
    pub fn sent(&self, mut map: DeltaMap) -> Result<()> {
        map.clear();
        map.save(&self.map_path)
    }
}

#[cfg(test)]
#[path = "snapshots_tests.rs"]
mod tests;
