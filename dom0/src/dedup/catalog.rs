//! The sessions deduplication may link to: every committed session of every
//! configured volume whose format is `folders` (one file per chunk), read
//! from dom0's local metadata, numbered oldest first (by session name, then
//! volume), so the smallest ordinal is the oldest copy.

use super::disk::{DiskIndex, IndexBuilder};
use super::{key_of, IndexLoc};
use crate::local_meta::Meta;
use crate::manifest::{ChunkRef, ManifestReader};
use anyhow::{Context, Result};
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::{ByteOffset, ChunkSize};
use std::path::{Path, PathBuf};

/// The only session format whose chunk files can be linked.
pub const FOLDERS: &str = "folders";

pub struct SessionRef {
    pub vol: VolName,
    pub session: SessionName,
    pub manifest: PathBuf,
    /// Chunk files the session holds (for progress).
    pub stored_chunks: u64,
}

pub struct Catalog {
    pub sessions: Vec<SessionRef>,
    pub chunk_size: ChunkSize,
}

/// One data entry of a catalogued manifest.
pub struct Found {
    pub ordinal: u32,
    pub stored: [u8; 32],
    pub addr: ByteOffset,
}

impl Catalog {
    pub fn load(meta: &Meta, vols: &[VolName], chunk_size: ChunkSize) -> Result<Catalog> {
        let mut sessions = Vec::new();
        for v in vols {
            for s in meta.chain(v)? {
                if s.format == FOLDERS {
                    sessions.push(SessionRef {
                        vol: v.clone(),
                        manifest: meta.manifest_path(v, &s.name),
                        stored_chunks: s.stored_chunks,
                        session: s.name,
                    });
                }
            }
        }
        sessions.sort_by(|a, b| (&a.session, &a.vol).cmp(&(&b.session, &b.vol)));
        if sessions.len() > u32::MAX as usize {
            anyhow::bail!("too many sessions to deduplicate");
        }
        Ok(Catalog {
            sessions,
            chunk_size,
        })
    }

    /// The chunk file an index location names.
    pub fn loc(&self, l: IndexLoc) -> Option<ChunkLoc> {
        let s = self.sessions.get(l.session as usize)?;
        Some(ChunkLoc {
            vol: s.vol.clone(),
            session: s.session.clone(),
            addr: ByteOffset(u64::from(l.chunk) * self.chunk_size.bytes()),
        })
    }

    /// The index location of an address, if it fits the record (chunk
    /// indices past 2^32 are not deduplicated).
    pub fn index_loc(&self, ordinal: u32, addr: ByteOffset) -> Option<IndexLoc> {
        let cs = self.chunk_size.bytes();
        if !addr.0.is_multiple_of(cs) {
            return None;
        }
        let chunk = u32::try_from(addr.0 / cs).ok()?;
        Some(IndexLoc {
            session: ordinal,
            chunk,
        })
    }

    /// Every data entry of every session, oldest session first.
    pub fn for_each(&self, mut f: impl FnMut(Found) -> Result<()>) -> Result<()> {
        for (i, s) in self.sessions.iter().enumerate() {
            let rd = ManifestReader::open(&s.manifest)?;
            for e in rd {
                let e = e.with_context(|| format!("session {} of volume {}", s.session, s.vol))?;
                if let ChunkRef::Data { stored, .. } = e.chunk {
                    f(Found {
                        ordinal: i as u32,
                        stored,
                        addr: e.addr,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Build the index of first occurrences in `dir`.
    pub fn build_index(&self, dir: &Path) -> Result<DiskIndex> {
        let mut b = IndexBuilder::new(dir)?;
        self.for_each(|f| {
            if let Some(l) = self.index_loc(f.ordinal, f.addr) {
                b.push(&key_of(&f.stored), l)?;
            }
            Ok(())
        })?;
        b.finish()
    }
}

/// A temporary directory for the index beside the local metadata (same
/// file system as the manifests it is built from, which are 6× larger).
/// Leftovers of a killed run are removed first; the meta lock is held.
pub fn index_dir(meta: &Meta) -> Result<tempfile::TempDir> {
    if let Ok(rd) = std::fs::read_dir(&meta.root) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(INDEX_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(INDEX_PREFIX)
        .tempdir_in(&meta.root)
        .with_context(|| {
            format!(
                "cannot create a dedup index directory in {}",
                meta.root.display()
            )
        })
}

const INDEX_PREFIX: &str = ".dedup-index-";
