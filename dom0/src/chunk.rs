//! Chunk files: what one stored chunk looks like on the destination.
//!
//! ```text
//! 0..3   magic "SBC"
//! 3      format version (1)
//! 4      codec: 0 stored raw, 1 zstd, 2 zlib
//! 5      encryption: 0 none (format 1 knows no other)
//! 6..8   reserved, zero
//! 8..12  decoded length, u32 little-endian (at most the chunk size)
//! 12..   payload
//! ```
//!
//! The header makes the file self-describing, so a later format can add
//! authenticated encryption without guessing. Decoding is bounded by the
//! decoded length, and callers check the stored hash before calling it.

use sha2::{Digest as _, Sha256};
use sparsebak_common::header::{Codec, Compression};
use std::cell::RefCell;
use std::io::{Read, Write};

pub const MAGIC: &[u8; 3] = b"SBC";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 12;
const RAW: u8 = 0;
const ZSTD: u8 = 1;
const ZLIB: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk file is too short ({0} bytes)")]
    Short(usize),
    #[error("chunk file has a bad magic number or unsupported version/encryption")]
    BadHeader,
    #[error("chunk file declares {declared} bytes but {expected} were expected")]
    Length { declared: usize, expected: usize },
    #[error("chunk file has an unknown codec {0}")]
    Codec(u8),
    #[error("chunk file does not decompress: {0}")]
    Decode(String),
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

thread_local! {
    static ZSTD_CTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// One decompression context per thread instead of one per chunk.
    static ZSTD_DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn zstd_decompress(payload: &[u8], expected: usize) -> std::io::Result<Vec<u8>> {
    ZSTD_DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        let out = slot
            .as_mut()
            .expect("set above")
            .decompress(payload, expected);
        if out.is_err() {
            *slot = None; // never reuse a context that saw a bad frame
        }
        out
    })
}

fn compress(data: &[u8], c: Compression) -> Option<Vec<u8>> {
    match c.codec {
        Codec::Zstd => ZSTD_CTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, _)| *l) != Some(c.level) {
                *slot = Some((c.level, zstd::bulk::Compressor::new(c.level).ok()?));
            }
            slot.as_mut().unwrap().1.compress(data).ok()
        }),
        Codec::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::new(c.level as u32),
            );
            e.write_all(data).ok()?;
            e.finish().ok()
        }
    }
}

/// Encode one chunk. Data that does not shrink is stored raw, so
/// incompressible chunks cost nothing to decode.
pub fn encode(data: &[u8], c: Compression) -> Vec<u8> {
    let packed = compress(data, c).filter(|p| p.len() < data.len());
    let (codec, payload) = match &packed {
        Some(p) => (
            if c.codec == Codec::Zstd { ZSTD } else { ZLIB },
            p.as_slice(),
        ),
        None => (RAW, data),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, codec, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decode a chunk file whose decoded length must be `expected`.
pub fn decode(file: &[u8], expected: usize) -> Result<Vec<u8>, ChunkError> {
    if file.len() < HEADER_LEN {
        return Err(ChunkError::Short(file.len()));
    }
    if &file[..3] != MAGIC || file[3] != VERSION || file[5] != 0 || file[6] != 0 || file[7] != 0 {
        return Err(ChunkError::BadHeader);
    }
    let declared = u32::from_le_bytes(file[8..12].try_into().unwrap()) as usize;
    if declared != expected {
        return Err(ChunkError::Length { declared, expected });
    }
    let payload = &file[HEADER_LEN..];
    let out = match file[4] {
        RAW => payload.to_vec(),
        ZSTD => {
            zstd_decompress(payload, expected).map_err(|e| ChunkError::Decode(e.to_string()))?
        }
        ZLIB => {
            let mut out = Vec::with_capacity(expected);
            flate2::read::ZlibDecoder::new(payload)
                .take(expected as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ChunkError::Decode(e.to_string()))?;
            out
        }
        other => return Err(ChunkError::Codec(other)),
    };
    if out.len() != expected {
        return Err(ChunkError::Length {
            declared: out.len(),
            expected,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    b'a' + (i % 26) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_every_codec() {
        for c in ["zstd:1", "zstd:19", "zlib:0", "zlib:9"] {
            let c: Compression = c.parse().unwrap();
            for data in [
                vec![7u8; 65536],
                sample(65536, 3),
                sample(100, 5),
                b"text ".repeat(1000),
            ] {
                let f = encode(&data, c);
                assert_eq!(decode(&f, data.len()).unwrap(), data);
            }
        }
    }

    #[test]
    fn golden_header() {
        let f = encode(&[0u8; 1000], "zstd:3".parse().unwrap());
        assert_eq!(&f[..8], b"SBC\x01\x01\x00\x00\x00");
        assert_eq!(&f[8..12], &1000u32.to_le_bytes());
        let incompressible = sample(64, 9);
        let f = encode(&incompressible, "zstd:3".parse().unwrap());
        assert_eq!(f[4], RAW);
        assert_eq!(&f[12..], &incompressible[..]);
    }

    #[test]
    fn hostile_files_are_rejected() {
        let data = b"hello hello hello hello".repeat(100);
        let f = encode(&data, Compression::default());
        assert_eq!(decode(&f[..5], data.len()), Err(ChunkError::Short(5)));
        assert!(matches!(
            decode(&f, data.len() - 1),
            Err(ChunkError::Length { .. })
        ));
        let mut bad = f.clone();
        bad[5] = 1; // "encrypted"
        assert_eq!(decode(&bad, data.len()), Err(ChunkError::BadHeader));
        let mut bad = f.clone();
        bad[4] = 9;
        assert_eq!(decode(&bad, data.len()), Err(ChunkError::Codec(9)));
        // A bomb: declares a small length but inflates to more.
        let big = vec![0u8; 1 << 20];
        let mut bomb = encode(&big, Compression::default());
        bomb[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&bomb, 1000).is_err());
        let mut trunc = f.clone();
        trunc.truncate(f.len() - 3);
        assert!(decode(&trunc, data.len()).is_err());
    }
}
