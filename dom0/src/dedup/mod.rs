//! Deduplication: identical chunk files anywhere in the archive (across
//! volumes and sessions) are stored once, as hard links on the destination
//! (docs/FORMAT.md §12).
//!
//! * Identity is the manifest's *stored* SHA-256, the hash of the chunk
//!   file's bytes (header included): equal hash ⇒ byte-identical file.
//! * [`catalog::Catalog`]: every committed `folders` session of every volume,
//!   from dom0's local manifests (the authority), numbered oldest first.
//! * [`disk`]: the on-disk index of first occurrences, built fresh for every
//!   run, so it never names a location a prune or delete has removed.
//! * [`run::RunDedup`]: `send --dedup`'s decisions (index, then the chunks
//!   this run already sent, up to [`run::RUN_CAP`]).
//! * [`wire`]: the tar member that asks the agent for a hard link.
//! * [`archive::deduplicate`] runs `arch-deduplicate`.

pub mod archive;
pub mod catalog;
pub mod disk;
pub mod run;
pub mod wire;

#[cfg(test)]
mod tests;

use anyhow::Result;

/// Bytes of the stored hash used as index key (collisions of 128 bits are
/// out of reach; the agent checks the full hash before linking anyway).
pub const KEY_LEN: usize = 16;
pub type Key = [u8; KEY_LEN];

pub fn key_of(stored: &[u8; 32]) -> Key {
    stored[..KEY_LEN].try_into().expect("16 bytes")
}

/// Where the first occurrence of a key is: a session ordinal of the
/// [`catalog::Catalog`] and a chunk index (address / chunk size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexLoc {
    pub session: u32,
    pub chunk: u32,
}

/// Looking up the first occurrence of a key.
pub trait ChunkIndexLookup: Send + Sync {
    fn lookup(&self, key: &Key) -> Result<Option<IndexLoc>>;
}

/// An in-memory index (tests, and archives too small to bother).
#[derive(Default)]
pub struct MemIndex(pub std::collections::HashMap<Key, IndexLoc>);

impl MemIndex {
    /// Keep the first (smallest) location per key, as the disk index does.
    pub fn insert(&mut self, key: Key, loc: IndexLoc) {
        let e = self.0.entry(key).or_insert(loc);
        if loc < *e {
            *e = loc;
        }
    }
}

impl ChunkIndexLookup for MemIndex {
    fn lookup(&self, key: &Key) -> Result<Option<IndexLoc>> {
        Ok(self.0.get(key).copied())
    }
}
