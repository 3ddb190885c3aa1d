//! The newest state dom0 wrote (docs/FORMAT.md §17.3): per volume, a
//! generation counter and the digest of its chain (every session and the
//! sha256 of its `info.json`); per archive, a generation counter and each
//! volume's generation. Each change dom0 makes to a volume on the
//! destination (a committed send, a completed prune) gives it a new chain
//! and so the next generation; deleting a volume advances the archive's.
//!
//! In format 1 the records live in dom0's metadata only
//! (`<meta>/volumes/<vol>/state.json`, `<meta>/state.json`): what the
//! destination presents is its session listing, compared with them before
//! every command. The records are canonical JSON (serde, fields in this
//! order) so that format 2 can store the same bytes authenticated on the
//! destination and refuse an older generation without listing anything.

use super::LocalVolume;
use crate::fsutil::{read_bounded, write_atomic};
use crate::local_meta::Meta;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sparsebak_common::names::{SessionName, VolName};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// File of a volume's record, in its local metadata directory.
pub const VOLUME_STATE_FILE: &str = "state.json";
/// File of the archive's record, in the meta dir.
pub const ARCHIVE_STATE_FILE: &str = "state.json";
/// Largest record read (the archive's names every volume).
const MAX_RECORD: u64 = 16 << 20;

/// The newest state dom0 wrote of one volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRecord {
    pub volume: VolName,
    /// The volume's uuid (`volume.json`): a volume deleted and added again
    /// starts a new count.
    pub uuid: String,
    /// 1 for the first state recorded, then one more per change.
    pub generation: u64,
    pub sessions: u64,
    pub last: Option<SessionName>,
    /// [`chain_digest`] of the chain at this generation.
    pub chain_sha256: String,
}

/// The newest state dom0 wrote of the archive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecord {
    /// The archive's uuid.
    pub archive: String,
    /// One more per volume record written or volume deleted.
    pub generation: u64,
    /// Each volume's generation.
    pub volumes: BTreeMap<VolName, u64>,
}

/// The sha256 of the lines `S_… <info sha256>\n`, oldest session first:
/// equal digests mean the same sessions with the same `info.json` files
/// (and so the same manifests and chunk hashes).
pub fn chain_digest<'a>(sessions: impl IntoIterator<Item = (&'a SessionName, &'a str)>) -> String {
    let mut h = sha2::Sha256::new();
    for (name, info) in sessions {
        h.update(format!("{name} {info}\n").as_bytes());
    }
    hex::encode(h.finalize())
}

fn volume_path(meta: &Meta, vol: &VolName) -> PathBuf {
    meta.vol_dir(vol).join(VOLUME_STATE_FILE)
}

fn archive_path(meta: &Meta) -> PathBuf {
    meta.root.join(ARCHIVE_STATE_FILE)
}

fn load<T: for<'de> Deserialize<'de>>(p: &std::path::Path) -> Result<Option<T>> {
    if !p.exists() {
        return Ok(None);
    }
    let b = read_bounded(p, MAX_RECORD)?;
    let v = serde_json::from_slice(&b)
        .with_context(|| format!("state record {} is invalid", p.display()))?;
    Ok(Some(v))
}

/// A volume's record, if one was written.
pub fn volume_record(meta: &Meta, vol: &VolName) -> Result<Option<VolumeRecord>> {
    let r: Option<VolumeRecord> = load(&volume_path(meta, vol))?;
    if let Some(r) = &r {
        if &r.volume != vol {
            bail!("state record of volume {vol} names volume {}", r.volume);
        }
    }
    Ok(r)
}

/// The archive's record, if one was written.
pub fn archive_record(meta: &Meta) -> Result<Option<ArchiveRecord>> {
    load(&archive_path(meta))
}

/// Record the volume's current local chain as its newest state, if it is
/// not recorded already (after a send or prune committed locally; also
/// on first use of an archive older than the records, and after a crash
/// between a local commit and this call). Returns the record.
pub fn record(meta: &Meta, archive: &str, vol: &VolName) -> Result<Option<VolumeRecord>> {
    let Some(state) = meta.load_volume(vol)? else {
        return Ok(None);
    };
    let local = LocalVolume::load(meta, vol)?;
    let digest = chain_digest(local.sessions.iter().map(|(n, d)| (n, d.as_str())));
    let old = volume_record(meta, vol)?.filter(|r| r.uuid == state.uuid);
    if let Some(r) = old.as_ref().filter(|r| r.chain_sha256 == digest) {
        return Ok(Some(r.clone()));
    }
    let rec = VolumeRecord {
        volume: vol.clone(),
        uuid: state.uuid,
        generation: old.map_or(1, |r| r.generation + 1),
        sessions: local.sessions.len() as u64,
        last: local.sessions.last().map(|(n, _)| n.clone()),
        chain_sha256: digest,
    };
    // The volume's record first: the archive's never names a generation
    // that is not recorded.
    write_atomic(&volume_path(meta, vol), &serde_json::to_vec_pretty(&rec)?)?;
    update_archive(meta, archive, |a| {
        a.volumes.insert(vol.clone(), rec.generation);
    })?;
    Ok(Some(rec))
}

/// A volume was deleted: the archive moves to its next generation.
pub fn forget(meta: &Meta, archive: &str, vol: &VolName) -> Result<()> {
    update_archive(meta, archive, |a| {
        a.volumes.remove(vol);
    })
}

fn update_archive(
    meta: &Meta,
    archive: &str,
    change: impl FnOnce(&mut ArchiveRecord),
) -> Result<()> {
    let mut a = archive_record(meta)?
        .filter(|a| a.archive == archive)
        .unwrap_or_else(|| ArchiveRecord {
            archive: archive.into(),
            ..Default::default()
        });
    change(&mut a);
    a.generation += 1;
    write_atomic(&archive_path(meta), &serde_json::to_vec_pretty(&a)?)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
