//! Typed units. A chunk index, a byte offset and a chunk size are all `u64`s
//! underneath; keeping them apart stops the classic "index used as offset" bug.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The smallest LVM thin chunk, and the unit that `--chunk-factor` multiplies.
pub const CHUNK_UNIT: u64 = 64 * 1024;
/// Largest chunk size an archive may use (chunk-factor 256).
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// A byte offset into a volume (also a chunk's "address").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ByteOffset(pub u64);

/// A byte count (volume sizes, stored sizes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Bytes(pub u64);

/// Index of a backup chunk: chunk `n` covers `[n*size, (n+1)*size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChunkIndex(pub u64);

/// The archive's chunk size: a multiple of [`CHUNK_UNIT`], at most [`MAX_CHUNK_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct ChunkSize(u64);

impl ChunkSize {
    /// Build from a chunk factor (1..=256).
    pub fn from_factor(factor: u64) -> Result<Self, String> {
        if factor == 0
            || factor
                .checked_mul(CHUNK_UNIT)
                .is_none_or(|b| b > MAX_CHUNK_SIZE)
        {
            return Err(format!(
                "chunk factor {factor} is out of range: it must be 1 to {}",
                MAX_CHUNK_SIZE / CHUNK_UNIT
            ));
        }
        Ok(ChunkSize(factor * CHUNK_UNIT))
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
    /// Number of chunks needed to cover `size` bytes.
    pub fn count(self, size: Bytes) -> u64 {
        size.0.div_ceil(self.0)
    }
    pub fn offset(self, idx: ChunkIndex) -> ByteOffset {
        ByteOffset(idx.0 * self.0)
    }
    /// The chunk that contains byte `off`.
    pub fn index_of(self, off: ByteOffset) -> ChunkIndex {
        ChunkIndex(off.0 / self.0)
    }
    /// Length of chunk `idx` in a volume of `size` bytes (the last may be short).
    pub fn len_in(self, idx: ChunkIndex, size: Bytes) -> u64 {
        let start = idx.0 * self.0;
        size.0.saturating_sub(start).min(self.0)
    }
    /// Largest stored chunk file accepted for this chunk size. Covers the
    /// chunk-file header plus worst-case compressor expansion, with room for
    /// an authentication tag once encryption exists.
    pub fn max_stored(self) -> u64 {
        self.0 + self.0 / 64 + 4096
    }
}

impl TryFrom<u64> for ChunkSize {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if v == 0 || !v.is_multiple_of(CHUNK_UNIT) {
            return Err(format!("chunk size {v} is not a multiple of {CHUNK_UNIT}"));
        }
        ChunkSize::from_factor(v / CHUNK_UNIT)
    }
}

impl From<ChunkSize> for u64 {
    fn from(c: ChunkSize) -> u64 {
        c.0
    }
}

impl fmt::Display for ByteOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if self.0 >= 1 << 30 {
            write!(f, "{:.2} GiB", b / (1u64 << 30) as f64)
        } else if self.0 >= 1 << 20 {
            write!(f, "{:.1} MiB", b / (1u64 << 20) as f64)
        } else if self.0 >= 1 << 10 {
            write!(f, "{:.1} KiB", b / 1024.0)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_bounds() {
        assert!(ChunkSize::from_factor(0).is_err());
        assert!(ChunkSize::from_factor(257).is_err());
        assert_eq!(ChunkSize::from_factor(256).unwrap().bytes(), MAX_CHUNK_SIZE);
        assert!(ChunkSize::try_from(65537).is_err());
    }

    /// Regression: `factor * CHUNK_UNIT` overflowed for a huge factor
    /// (`init --chunk-factor 281474976710656`): a panic in debug builds and,
    /// in release, a wrapped product of 0 accepted as a chunk size of 0.
    #[test]
    fn huge_chunk_factor_is_refused_not_wrapped() {
        for f in [
            1u64 << 48,
            (1 << 48) + 1,
            u64::MAX / CHUNK_UNIT + 1,
            u64::MAX,
        ] {
            assert!(ChunkSize::from_factor(f).is_err(), "{f}");
        }
    }

    #[test]
    fn last_chunk_is_short() {
        let cs = ChunkSize::from_factor(1).unwrap();
        let size = Bytes(3 * CHUNK_UNIT + 10);
        assert_eq!(cs.count(size), 4);
        assert_eq!(cs.len_in(ChunkIndex(3), size), 10);
        assert_eq!(cs.len_in(ChunkIndex(2), size), CHUNK_UNIT);
        assert_eq!(cs.len_in(ChunkIndex(4), size), 0);
    }
}
