//! The reflink copies and change map of one image file.
//!
//! In the snapshot directory (on the image's file system) a volume has one
//! reflink copy, `<vol>.<TOKEN>.tick`: the image as of the last harvest,
//! which the archive's latest session plus the chunks the change map flags
//! equals (the map's invariant, crate::lvm::deltamap; its base is TOKEN).
//! A harvest (monitor, and the first half of send) keeps that true on disk
//! at every step, so a run killed anywhere is completed by the next one:
//!
//! 1. copy the image to `<vol>.<NEW>.tock` (`FICLONE`; fsync the copy and
//!    the directory);
//! 2. compare the extent maps of tick and tock into the map (compare.rs);
//! 3. save the map with base NEW (atomic, durable): the commit point;
//! 4. rename tock to `<vol>.<NEW>.tick`, remove the old tick, fsync.
//!
//! Recovery, at the start of every run: the copy whose token is the map's
//! base is the tick (a tock of that token is renamed, finishing step 4);
//! every other copy of the volume is removed. Without a tick matching the
//! map (removed by hand, metadata lost), a fresh tick is taken and every
//! chunk flagged: the next send re-reads the image, slow but complete.
//!
//! Tokens are random and never reused, so a stale copy cannot pass for the
//! tick (an inode number could be reused once its file is gone).

use super::compare::{harvest, Pair};
use super::fiemap::ReflinkFs;
use crate::fsutil::fsync_dir;
use crate::lvm::deltamap::DeltaMap;
use crate::test_hooks::crash_at;
use anyhow::{Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::{Bytes, ChunkSize};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct ReflinkVolume<'a> {
    pub fs: &'a dyn ReflinkFs,
    pub vol: &'a VolName,
    /// The committed image.
    pub image: PathBuf,
    /// Where the copies live: `<pool>/.sparsebak/<archive uuid>`.
    pub snap_dir: PathBuf,
    pub map_path: PathBuf,
    pub cs: ChunkSize,
}

/// What a harvest leaves for send.
#[derive(Debug)]
pub enum Prepared {
    /// The image does not exist (yet).
    Missing,
    /// monitor before the first send: nothing to track yet.
    NotStarted,
    /// First session: read everything from `tick`.
    Full { tick: PathBuf, map: DeltaMap },
    /// Read the chunks flagged in `map` from `tick` (a resync: all).
    Incremental {
        tick: PathBuf,
        map: DeltaMap,
        harvested: u64,
        /// Bytes the harvest compared by content (doubtful extents).
        compared: u64,
        resync: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tick,
    Tock,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Tick => "tick",
            Kind::Tock => "tock",
        }
    }
}

/// A new copy, durable, not yet the tick.
struct Tock {
    token: u64,
    path: PathBuf,
    file: File,
}

impl ReflinkVolume<'_> {
    fn copy_path(&self, token: u64, kind: Kind) -> PathBuf {
        self.snap_dir
            .join(format!("{}.{token:016x}.{}", self.vol, kind.suffix()))
    }

    /// This volume's copy named `name`, if it is one.
    fn parse(&self, name: &str) -> Option<(u64, Kind)> {
        let rest = name.strip_prefix(self.vol.as_str())?.strip_prefix('.')?;
        let (hex, kind) = rest.split_once('.')?;
        let kind = match kind {
            "tick" => Kind::Tick,
            "tock" => Kind::Tock,
            _ => return None,
        };
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((u64::from_str_radix(hex, 16).ok()?, kind))
    }

    /// The copies of this volume in the snapshot directory.
    fn copies(&self) -> Result<Vec<(u64, Kind)>> {
        let rd = match std::fs::read_dir(&self.snap_dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.snap_dir.display()))
            }
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.with_context(|| format!("cannot list {}", self.snap_dir.display()))?;
            if let Some(c) = e.file_name().to_str().and_then(|n| self.parse(n)) {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn remove(&self, p: &Path) -> Result<()> {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", p.display()))
            }
            _ => Ok(()),
        }
    }

    /// Keep only the copy named by the map's base, as the tick (finishing
    /// an interrupted rotation); returns it if there is one.
    fn recover(&self, map: Option<&DeltaMap>) -> Result<Option<PathBuf>> {
        let base = map.map(|m| m.base_thin_id);
        let mut tick = None;
        let mut changed = false;
        for (token, kind) in self.copies()? {
            let p = self.copy_path(token, kind);
            if Some(token) != base {
                self.remove(&p)?;
                changed = true;
                continue;
            }
            let t = self.copy_path(token, Kind::Tick);
            if kind == Kind::Tock {
                log::info!("{}: completing an interrupted copy rotation", self.vol);
                std::fs::rename(&p, &t)
                    .with_context(|| format!("cannot rename {} to {}", p.display(), t.display()))?;
                changed = true;
            }
            tick = Some(t);
        }
        if changed {
            fsync_dir(&self.snap_dir)?;
        }
        Ok(tick)
    }

    /// Step 1: a durable reflink copy of the image as a tock; `None` if the
    /// image does not exist.
    fn take_copy(&self, avoid: Option<u64>) -> Result<Option<Tock>> {
        let src = match File::open(&self.image) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", self.image.display()))
            }
        };
        let meta = src
            .metadata()
            .with_context(|| format!("cannot stat {}", self.image.display()))?;
        if !meta.is_file() {
            anyhow::bail!(
                "{} is not a regular file: a reflink source holds image files",
                self.image.display()
            );
        }
        self.make_snap_dir()?;
        let token = loop {
            let t = uuid::Uuid::new_v4().as_u64_pair().0;
            if t != 0 && Some(t) != avoid {
                break t;
            }
        };
        let path = self.copy_path(token, Kind::Tock);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        if let Err(e) = self.fs.clone_file(&src, &file) {
            let _ = std::fs::remove_file(&path);
            return Err(anyhow::Error::new(e).context(format!(
                "cannot make a reflink copy of {} in {} (the pool's file system must support \
                 reflinks, as Btrfs and XFS do; otherwise use --source=dir:)",
                self.image.display(),
                self.snap_dir.display()
            )));
        }
        file.sync_all()
            .with_context(|| format!("cannot fsync {}", path.display()))?;
        fsync_dir(&self.snap_dir)?;
        crash_at("reflink-tock");
        Ok(Some(Tock { token, path, file }))
    }

    fn make_snap_dir(&self) -> Result<()> {
        if self.snap_dir.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.snap_dir)
            .with_context(|| format!("cannot create {}", self.snap_dir.display()))?;
        for d in self.snap_dir.ancestors().skip(1).take(2) {
            fsync_dir(d)?;
        }
        Ok(())
    }

    /// Step 4: the tock becomes the tick; any other copy goes.
    fn promote(&self, tock: Tock) -> Result<PathBuf> {
        let tick = self.copy_path(tock.token, Kind::Tick);
        std::fs::rename(&tock.path, &tick).with_context(|| {
            format!(
                "cannot rename {} to {}",
                tock.path.display(),
                tick.display()
            )
        })?;
        crash_at("reflink-promoted");
        for (token, kind) in self.copies()? {
            if token != tock.token {
                self.remove(&self.copy_path(token, kind))?;
            }
        }
        fsync_dir(&self.snap_dir)?;
        Ok(tick)
    }

    fn chunks(&self, f: &File, p: &Path) -> Result<u64> {
        let len = f
            .metadata()
            .with_context(|| format!("cannot stat {}", p.display()))?
            .len();
        Ok(self.cs.count(Bytes(len)))
    }

    /// A fresh tick with `all` (or no) chunks flagged; `None` if the image
    /// is missing.
    fn fresh(&self, base: Option<u64>, all: bool) -> Result<Option<(PathBuf, DeltaMap)>> {
        let Some(tock) = self.take_copy(base)? else {
            return Ok(None);
        };
        let n = self.chunks(&tock.file, &tock.path)?;
        let map = match all {
            true => DeltaMap::all(n, tock.token),
            false => DeltaMap::new(n, tock.token),
        };
        map.save(&self.map_path)?;
        crash_at("reflink-map");
        Ok(Some((self.promote(tock)?, map)))
    }

    /// A new tick and an empty map based on it (diff --remap's baseline).
    pub fn fresh_baseline(&self) -> Result<Option<(PathBuf, DeltaMap)>> {
        let map = DeltaMap::load(&self.map_path)?;
        self.recover(map.as_ref())?;
        self.fresh(map.map(|m| m.base_thin_id), false)
    }

    /// The current tick and its map, after recovery, if they match.
    pub fn current(&self) -> Result<(Option<PathBuf>, Option<DeltaMap>)> {
        let map = DeltaMap::load(&self.map_path)?;
        let tick = self.recover(map.as_ref())?;
        Ok((tick, map))
    }

    /// Bring the map up to date and rotate the copies (monitor, and the
    /// first half of send).
    pub fn harvest(&self, has_sessions: bool, for_send: bool) -> Result<Prepared> {
        let (tick, map) = self.current()?;
        let base = map.as_ref().map(|m| m.base_thin_id);
        if !has_sessions {
            if !for_send {
                return Ok(match self.image.exists() {
                    true => Prepared::NotStarted,
                    false => Prepared::Missing,
                });
            }
            return Ok(match self.fresh(base, false)? {
                Some((tick, map)) => Prepared::Full { tick, map },
                None => Prepared::Missing,
            });
        }
        let (Some(tick), Some(mut map)) = (tick, map) else {
            return self.resync(base, "the reflink copy .tick or the change map is missing");
        };
        let Some(tock) = self.take_copy(base)? else {
            return Ok(Prepared::Missing);
        };
        let found = self.compare(&tick, &tock, &mut map);
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tock.path);
                return Err(e);
            }
        };
        map.base_thin_id = tock.token;
        map.save(&self.map_path)?;
        crash_at("reflink-map");
        let tick = self.promote(tock)?;
        Ok(Prepared::Incremental {
            tick,
            map,
            harvested: found.changed,
            compared: found.compared_bytes,
            resync: false,
        })
    }

    /// Step 2.
    fn compare(
        &self,
        tick: &Path,
        tock: &Tock,
        map: &mut DeltaMap,
    ) -> Result<super::compare::Found> {
        let old = File::open(tick).with_context(|| format!("cannot open {}", tick.display()))?;
        let pair = Pair {
            old: &old,
            old_path: tick,
            new: &tock.file,
            new_path: &tock.path,
        };
        harvest(self.fs, &pair, self.cs, map)
            .with_context(|| format!("cannot compare the copies of {}", self.vol))
    }

    fn resync(&self, base: Option<u64>, why: &str) -> Result<Prepared> {
        log::warn!(
            "{}: {why}; the next session re-reads the whole image",
            self.vol
        );
        Ok(match self.fresh(base, true)? {
            Some((tick, map)) => Prepared::Incremental {
                tick,
                harvested: map.chunks(),
                compared: 0,
                map,
                resync: true,
            },
            None => Prepared::Missing,
        })
    }

    /// After a session is committed (or nothing needed sending): the
    /// archive now equals the tick, so the map is cleared.
    pub fn sent(&self, mut map: DeltaMap) -> Result<()> {
        crash_at("reflink-sent");
        map.clear();
        map.save(&self.map_path)
    }

    /// Remove every copy of this volume (delete); returns them.
    pub fn remove_copies(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for (token, kind) in self.copies()? {
            let p = self.copy_path(token, kind);
            self.remove(&p)?;
            out.push(p);
        }
        if !out.is_empty() {
            fsync_dir(&self.snap_dir)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "volume_tests.rs"]
mod tests;
