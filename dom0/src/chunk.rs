//! Chunk files: what one stored chunk looks like on the destination.
//!
//! ```text
//! 0..3   magic "SBC"
//! 3      format version (1; 2 in encrypted archives)
//! 4      codec: 0 stored raw, 1 zstd, 2 zlib
//! 5      encryption: 0 none (version 1), 1 XChaCha20-Poly1305 (version 2)
//! 6..8   reserved, zero
//! 8..12  decoded length, u32 little-endian (at most the chunk size)
//! 12..   payload (version 1); version 2: 24-byte nonce, sealed payload,
//!        16-byte tag (docs/FORMAT.md §18.4)
//! ```
//!
//! [`ChunkCodec`] is what the send and restore pipelines call: the same
//! calls encode and decode either version, and compute the manifest's
//! content digest (plain SHA-256, or format 2's keyed HMAC-SHA256).
//!
//! The header makes the file self-describing, so a later format can add
//! authenticated encryption without guessing. Decoding is bounded by the
//! decoded length, and callers check the stored hash before calling it.

use crate::crypto::seal::{open_chunk, seal_chunk, Binding, NONCE_LEN, TAG_LEN};
use crate::crypto::ArchiveKeys;
use sha2::{Digest as _, Sha256};
use sparsebak_common::header::{Codec, Compression};
use sparsebak_common::units::ByteOffset;
use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::Arc;

pub const MAGIC: &[u8; 3] = b"SBC";
pub const VERSION: u8 = 1;
/// Chunk format version of encrypted archives.
pub const VERSION_SEALED: u8 = 2;
const XCHACHA: u8 = 1;
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
    #[error("chunk file is a format {found} chunk in a format {want} archive")]
    Version { found: u8, want: u8 },
    #[error("{0}")]
    Crypto(#[from] crate::crypto::CryptoError),
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

thread_local! {
    /// The compressor of this thread, with its level and checksum flag.
    static ZSTD_CTX: RefCell<Option<(i32, bool, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
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

/// A zstd compressor at `level`, whose frames carry zstd's content
/// checksum when `checksum` is set.
fn zstd_compressor(level: i32, checksum: bool) -> Option<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level).ok()?;
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(checksum))
        .ok()?;
    Some(c)
}

fn compress(data: &[u8], c: Compression, checksum: bool) -> Option<Vec<u8>> {
    match c.codec {
        Codec::Zstd => ZSTD_CTX.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(l, k, _)| (*l, *k)) != Some((c.level, checksum)) {
                *slot = Some((c.level, checksum, zstd_compressor(c.level, checksum)?));
            }
            slot.as_mut().unwrap().2.compress(data).ok()
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
    encode_with(data, c, false, VERSION, 0)
}

/// The file of version `version`, with `gap` bytes left zero between the
/// header and the payload (room for format 2's nonce); a zstd frame with
/// zstd's content checksum when `checksum` is set.
fn encode_with(data: &[u8], c: Compression, checksum: bool, version: u8, gap: usize) -> Vec<u8> {
    let packed = compress(data, c, checksum).filter(|p| p.len() < data.len());
    let (codec, payload) = match &packed {
        Some(p) => (
            if c.codec == Codec::Zstd { ZSTD } else { ZLIB },
            p.as_slice(),
        ),
        None => (RAW, data),
    };
    let enc = if version == VERSION_SEALED {
        XCHACHA
    } else {
        0
    };
    let mut out = Vec::with_capacity(HEADER_LEN + gap + payload.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, codec, enc, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.resize(HEADER_LEN + gap, 0);
    out.extend_from_slice(payload);
    out
}

/// The header's checks; the codec byte and the decoded length.
fn check_header(file: &[u8], version: u8, expected: usize) -> Result<u8, ChunkError> {
    if file.len() < HEADER_LEN {
        return Err(ChunkError::Short(file.len()));
    }
    if &file[..3] != MAGIC {
        return Err(ChunkError::BadHeader);
    }
    if file[3] != version && (file[3] == VERSION || file[3] == VERSION_SEALED) {
        return Err(ChunkError::Version {
            found: file[3],
            want: version,
        });
    }
    let enc = if version == VERSION_SEALED {
        XCHACHA
    } else {
        0
    };
    if file[3] != version || file[5] != enc || file[6] != 0 || file[7] != 0 {
        return Err(ChunkError::BadHeader);
    }
    let declared = u32::from_le_bytes(file[8..12].try_into().unwrap()) as usize;
    if declared != expected {
        return Err(ChunkError::Length { declared, expected });
    }
    Ok(file[4])
}

/// Decode a format 1 chunk file whose decoded length must be `expected`.
pub fn decode(file: &[u8], expected: usize) -> Result<Vec<u8>, ChunkError> {
    let codec = check_header(file, VERSION, expected)?;
    unpack(codec, &file[HEADER_LEN..], expected)
}

/// Zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Does decoding `payload` (of codec `codec`) without error prove the
/// decoded bytes, given that the payload itself is authenticated? For a raw
/// payload, which is its content (§22.1), and for one zstd frame, the whole
/// payload, that carries zstd's content checksum: the decoder checks it
/// against what it produced (docs/FORMAT.md §22.3). Not for zlib, nor for
/// frames without the checksum (archives made before it).
fn decoding_proves(codec: u8, payload: &[u8]) -> bool {
    match codec {
        RAW => true,
        ZSTD => {
            payload.len() > 4
                && payload[..4] == ZSTD_MAGIC
                && payload[4] & 0x04 != 0 // Content_Checksum_flag
                && zstd::zstd_safe::find_frame_compressed_size(payload) == Ok(payload.len())
        }
        _ => false,
    }
}

fn unpack(codec: u8, payload: &[u8], expected: usize) -> Result<Vec<u8>, ChunkError> {
    let out = match codec {
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

/// How the pipelines turn chunks into files and back, and digest them:
/// format 1 (plain) or format 2 (sealed to the archive's keys, the volume
/// and each chunk's address).
#[derive(Clone)]
pub struct ChunkCodec {
    compression: Compression,
    sealing: Option<(Arc<ArchiveKeys>, String)>,
    /// New zstd files carry zstd's content checksum (FORMAT.md §22.3).
    zstd_checksum: bool,
}

/// A decoded chunk, and whether decoding has proven it (no content digest
/// to check): see [`ChunkCodec::decode_owned`]. A chunk stored raw is the
/// tail of the buffer it came in, not a copy of it.
#[derive(Debug)]
pub struct Decoded {
    buf: Vec<u8>,
    at: usize,
    pub proven: bool,
}

impl Decoded {
    /// The chunk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.at..]
    }
}

/// A raw payload of `len` bytes is the chunk only if `len` is `expected`.
fn raw_len(len: usize, expected: usize) -> Result<(), ChunkError> {
    if len != expected {
        return Err(ChunkError::Length {
            declared: len,
            expected,
        });
    }
    Ok(())
}

impl ChunkCodec {
    pub fn plain(compression: Compression) -> Self {
        ChunkCodec {
            compression,
            sealing: None,
            zstd_checksum: false,
        }
    }

    /// Format 2 for the volume whose uuid is `volume_uuid`.
    pub fn sealed(compression: Compression, keys: Arc<ArchiveKeys>, volume_uuid: &str) -> Self {
        ChunkCodec {
            compression,
            sealing: Some((keys, volume_uuid.to_string())),
            zstd_checksum: false,
        }
    }

    /// Encode new zstd files with zstd's content checksum (the archive's
    /// choice: `Config::zstd_checksum`). Decoding reads either kind.
    pub fn with_zstd_checksum(mut self, on: bool) -> Self {
        self.zstd_checksum = on;
        self
    }

    pub fn is_sealed(&self) -> bool {
        self.sealing.is_some()
    }

    /// The manifest's content digest of a chunk's bytes.
    pub fn content_digest(&self, data: &[u8]) -> [u8; 32] {
        match &self.sealing {
            None => sha256(data),
            Some((k, _)) => k.content_digest(data),
        }
    }

    /// The manifest's *stored* digest of a chunk file. Format 1: its
    /// SHA-256. Format 2: the first 16 bytes of its random nonce and its
    /// 16-byte Poly1305 tag, which identify this very file (a file of
    /// another session or sealing has another nonce; one with this nonce
    /// and tag but other bytes fails authentication) without a hash pass
    /// over it on either side (docs/FORMAT.md §18.4). A file too short to
    /// hold them gets a digest no sealed file has.
    pub fn stored_digest(&self, file: &[u8]) -> [u8; 32] {
        if self.sealing.is_none() {
            return sha256(file);
        }
        let mut d = [0u8; 32];
        if file.len() >= HEADER_LEN + NONCE_LEN + TAG_LEN {
            d[..16].copy_from_slice(&file[HEADER_LEN..HEADER_LEN + 16]);
            d[16..].copy_from_slice(&file[file.len() - TAG_LEN..]);
        } else {
            d = sha256(file);
            d[0] ^= 0xff;
        }
        d
    }

    /// The chunk file for `data` at `addr`.
    pub fn encode(&self, data: &[u8], addr: ByteOffset) -> Vec<u8> {
        let Some((keys, volume)) = &self.sealing else {
            return encode_with(data, self.compression, self.zstd_checksum, VERSION, 0);
        };
        let mut f = encode_with(
            data,
            self.compression,
            self.zstd_checksum,
            VERSION_SEALED,
            NONCE_LEN,
        );
        let b = Binding {
            volume,
            addr: addr.0,
        };
        seal_chunk(keys, b, &mut f, HEADER_LEN);
        f
    }

    /// [`ChunkCodec::decode`] of the file at `buf[start..]`, consuming the
    /// buffer: a sealed file is opened in place, without a copy.
    ///
    /// `proven`: a file whose stored digest has just matched its manifest
    /// entry, and which decoded, proves the entry's content digest without
    /// hashing the decoded bytes again when it is stored raw (§22.1: format
    /// 1's decoded bytes are the file's own bytes 12.., which the SHA-256 of
    /// the whole file has authenticated; format 2's are the plaintext the
    /// AEAD has just authenticated under the nonce and tag the manifest
    /// records) or is one zstd frame with zstd's content checksum, which
    /// the decoder has just checked against its output (§22.3). The
    /// manifest line pairs that file with the content digest dom0 computed
    /// over the very bytes it encoded into it. Other files (zlib, zstd
    /// without the checksum) need their content digest checked. Only
    /// meaningful once the stored digest matched.
    pub fn decode_owned(
        &self,
        mut buf: Vec<u8>,
        start: usize,
        addr: ByteOffset,
        expected: usize,
    ) -> Result<Decoded, ChunkError> {
        let Some((keys, volume)) = &self.sealing else {
            let codec = check_header(&buf[start..], VERSION, expected)?;
            let payload = &buf[start + HEADER_LEN..];
            let proven = decoding_proves(codec, payload);
            if codec == RAW {
                raw_len(payload.len(), expected)?;
                let at = start + HEADER_LEN;
                return Ok(Decoded { buf, at, proven });
            }
            let buf = unpack(codec, payload, expected)?;
            return Ok(Decoded { buf, at: 0, proven });
        };
        let codec = check_header(&buf[start..], VERSION_SEALED, expected)?;
        let b = Binding {
            volume,
            addr: addr.0,
        };
        let r = open_chunk(keys, b, &mut buf[start..], HEADER_LEN)?;
        let (from, to) = (start + r.start, start + r.end);
        let proven = decoding_proves(codec, &buf[from..to]);
        if codec == RAW {
            raw_len(to - from, expected)?;
            buf.truncate(to);
            return Ok(Decoded {
                buf,
                at: from,
                proven,
            });
        }
        let buf = unpack(codec, &buf[from..to], expected)?;
        Ok(Decoded { buf, at: 0, proven })
    }

    /// Decode the chunk file of `addr`, `expected` bytes long. A sealed
    /// file is authenticated (bound to this archive, volume and address)
    /// before anything decompresses it.
    pub fn decode(
        &self,
        file: &[u8],
        addr: ByteOffset,
        expected: usize,
    ) -> Result<Vec<u8>, ChunkError> {
        let Some((keys, volume)) = &self.sealing else {
            return decode(file, expected);
        };
        let codec = check_header(file, VERSION_SEALED, expected)?;
        let mut buf = file.to_vec();
        let b = Binding {
            volume,
            addr: addr.0,
        };
        let r = open_chunk(keys, b, &mut buf, HEADER_LEN)?;
        unpack(codec, &buf[r], expected)
    }
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

    fn sealed_codec(vol: &str) -> ChunkCodec {
        let k = ArchiveKeys::derive(&crate::crypto::MasterKey::from_bytes([5; 32]), "arch");
        ChunkCodec::sealed(Compression::default(), Arc::new(k), vol)
    }

    #[test]
    fn sealed_round_trip_golden_header_and_bindings() {
        let c = sealed_codec("vol-a");
        for data in [sample(65536, 3), b"text ".repeat(1000), vec![1]] {
            let f = c.encode(&data, ByteOffset(65536));
            assert_eq!(&f[..3], b"SBC");
            assert_eq!(f[3], VERSION_SEALED);
            assert_eq!(f[5], XCHACHA);
            assert_eq!(&f[8..12], &(data.len() as u32).to_le_bytes());
            assert_eq!(c.decode(&f, ByteOffset(65536), data.len()).unwrap(), data);
            // Another address, another volume: refused before decoding.
            let e = c.decode(&f, ByteOffset(0), data.len()).unwrap_err();
            assert!(matches!(e, ChunkError::Crypto(_)), "{e}");
            let e = sealed_codec("vol-b")
                .decode(&f, ByteOffset(65536), data.len())
                .unwrap_err();
            assert!(matches!(e, ChunkError::Crypto(_)), "{e}");
            // The codec byte and length are bound too.
            let mut g = f.clone();
            g[4] ^= 3;
            assert!(c.decode(&g, ByteOffset(65536), data.len()).is_err());
        }
        let text = b"secret text ".repeat(100);
        let f = c.encode(&text, ByteOffset(0));
        assert!(!f.windows(6).any(|w| w == b"secret"));
        assert_ne!(f, c.encode(&text, ByteOffset(0)), "random nonces");
        assert_ne!(c.content_digest(&text), sha256(&text));
    }

    #[test]
    fn versions_do_not_mix() {
        let c = sealed_codec("v");
        let plain = encode(b"abc", Compression::default());
        assert_eq!(
            c.decode(&plain, ByteOffset(0), 3).unwrap_err(),
            ChunkError::Version { found: 1, want: 2 }
        );
        let f = c.encode(b"abc", ByteOffset(0));
        assert_eq!(
            decode(&f, 3).unwrap_err(),
            ChunkError::Version { found: 2, want: 1 }
        );
        assert!(c.decode(&f[..20], ByteOffset(0), 3).is_err());
    }

    #[test]
    fn sealed_stored_digest_is_nonce_and_tag() {
        let c = sealed_codec("v");
        let a = c.encode(b"same bytes", ByteOffset(0));
        let b = c.encode(b"same bytes", ByteOffset(0));
        let (da, db) = (c.stored_digest(&a), c.stored_digest(&b));
        assert_ne!(da, db, "another sealing of the same chunk is another file");
        assert_eq!(&da[..16], &a[HEADER_LEN..HEADER_LEN + 16]);
        assert_eq!(&da[16..], &a[a.len() - TAG_LEN..]);
        assert_ne!(c.stored_digest(&a[..20]), c.stored_digest(&a[..21]));
        let plain = ChunkCodec::plain(Compression::default());
        assert_eq!(plain.stored_digest(&a), sha256(&a));
    }

    fn random(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// Decoding proves a raw file's content (its stored digest covers it)
    /// and a checksummed zstd frame's (the decoder checks the checksum);
    /// zstd frames without it (archives made before §22.3) and zlib do not.
    /// What makes that safe is that the file must first match its stored
    /// digest and decode (a byte changed in a raw file fails one or the
    /// other).
    #[test]
    fn raw_files_and_checksummed_frames_prove_their_content() {
        let random = random(65536);
        let text = b"text ".repeat(1000);
        let frame = |f: &[u8]| [vec![7u8], f.to_vec()].concat();
        let proven = |c: &ChunkCodec, f: &[u8], len| {
            let d = c.decode_owned(frame(f), 1, ByteOffset(0), len).unwrap();
            d.proven
        };
        let plain = ChunkCodec::plain(Compression::default());
        let raw = plain.encode(&random, ByteOffset(0));
        let packed = plain.encode(&text, ByteOffset(0));
        assert_eq!((raw[4], packed[4]), (RAW, ZSTD));
        assert!(proven(&plain, &raw, 65536));
        assert!(!proven(&plain, &packed, text.len()));
        let checked = plain.clone().with_zstd_checksum(true);
        let cpacked = checked.encode(&text, ByteOffset(0));
        assert_eq!(cpacked.len(), packed.len() + 4, "4 checksum bytes");
        assert_ne!(packed[HEADER_LEN + 4] & 4, 4);
        assert!(proven(&checked, &cpacked, text.len()));
        // Either codec reads either kind of frame.
        assert!(proven(&plain, &cpacked, text.len()));
        assert!(!proven(&checked, &packed, text.len()));
        let zlib = ChunkCodec::plain("zlib:6".parse().unwrap()).with_zstd_checksum(true);
        let z = zlib.encode(&text, ByteOffset(0));
        assert_eq!(z[4], ZLIB);
        assert!(!proven(&zlib, &z, text.len()));
        // A frame whose checksum does not match what it decodes to fails
        // (as it would if the decoder went wrong), and a second frame
        // after the first is not covered by its checksum: not proven.
        let mut bad = cpacked.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let e = checked.decode_owned(frame(&bad), 1, ByteOffset(0), text.len());
        assert!(matches!(e, Err(ChunkError::Decode(_))), "{e:?}");
        let half = &text[..text.len() / 2];
        let mut two = checked.encode(half, ByteOffset(0));
        two.extend_from_slice(&zstd::bulk::compress(half, 3).unwrap());
        two[8..12].copy_from_slice(&(text.len() as u32).to_le_bytes());
        let d = checked.decode_owned(frame(&two), 1, ByteOffset(0), text.len());
        assert!(!d.unwrap().proven);
        let mut bad = raw.clone();
        bad[100] ^= 1;
        assert_ne!(plain.stored_digest(&bad), plain.stored_digest(&raw));
        // Format 2: the checksum is inside the sealed payload.
        let c = sealed_codec("v");
        let sraw = c.encode(&random, ByteOffset(0));
        assert!(proven(&c, &sraw, 65536));
        assert!(!proven(&c, &c.encode(&text, ByteOffset(0)), text.len()));
        let sc = sealed_codec("v").with_zstd_checksum(true);
        assert!(proven(&sc, &sc.encode(&text, ByteOffset(0)), text.len()));
        let mut bad = sraw.clone();
        bad[HEADER_LEN + NONCE_LEN + 100] ^= 1;
        assert_eq!(c.stored_digest(&bad), c.stored_digest(&sraw));
        assert!(c.decode(&bad, ByteOffset(0), 65536).is_err());
    }

    #[test]
    fn decode_owned_equals_decode() {
        let c = sealed_codec("v");
        for data in [sample(65536, 3), b"text ".repeat(1000), vec![9]] {
            let f = c.encode(&data, ByteOffset(0));
            let mut frame = vec![0u8];
            frame.extend_from_slice(&f);
            assert_eq!(
                c.decode_owned(frame.clone(), 1, ByteOffset(0), data.len())
                    .unwrap()
                    .bytes(),
                data
            );
            assert!(c
                .decode_owned(frame.clone(), 1, ByteOffset(65536), data.len())
                .is_err());
            frame[1 + HEADER_LEN + NONCE_LEN] ^= 1;
            assert!(c.decode_owned(frame, 1, ByteOffset(0), data.len()).is_err());
        }
        let plain = ChunkCodec::plain(Compression::default());
        let f = encode(b"abc", Compression::default());
        assert_eq!(
            plain
                .decode_owned([vec![0], f].concat(), 1, ByteOffset(0), 3)
                .unwrap()
                .bytes(),
            b"abc"
        );
    }
}
