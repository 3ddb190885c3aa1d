//! The archive header, `sparsebak/archive.json` on the destination.
//!
//! It pins what every chunk in the archive was written with. Readers refuse a
//! header whose `format_version` they do not know, so a future format (for
//! example with encryption) cannot be misread as this one.

use crate::units::ChunkSize;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Value of the `format` field: identifies the file.
pub const FORMAT_NAME: &str = "sparsebak-archive";
/// Archive format version of unencrypted archives (`arch-init --encrypt=off`).
pub const FORMAT_VERSION: u32 = 1;
/// Archive format version of encrypted archives (docs/FORMAT.md §18).
pub const FORMAT_VERSION_ENCRYPTED: u32 = 2;
/// The `encryption` value of format 2.
pub const ENCRYPTION_XCHACHA: &str = "xchacha20poly1305";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd frames (default).
    Zstd,
    /// zlib streams (RFC 1950), as sparsebak 0.2 wrote.
    Zlib,
}

/// Compression settings for new chunks. Chunks record their own codec, so a
/// reader never needs this to decode; it only steers writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub codec: Codec,
    pub level: i32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codec: Codec::Zstd,
            level: 3,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    /// `zstd`, `zstd:LEVEL` (1..=19), `zlib`, `zlib:LEVEL` (0..=9).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let (codec, range, default) = match name {
            "zstd" => (Codec::Zstd, 1..=19, 3),
            "zlib" => (Codec::Zlib, 0..=9, 4),
            _ => {
                return Err(format!(
                    "unknown compression {s:?}: use zstd[:1-19] or zlib[:0-9]"
                ))
            }
        };
        let level = match level {
            None => default,
            Some(l) => l
                .parse::<i32>()
                .ok()
                .filter(|l| range.contains(l))
                .ok_or_else(|| {
                    format!(
                        "bad compression level in {s:?}: {name} takes {}..={}",
                        range.start(),
                        range.end()
                    )
                })?,
        };
        Ok(Compression { codec, level })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match self.codec {
            Codec::Zstd => "zstd",
            Codec::Zlib => "zlib",
        };
        write!(f, "{n}:{}", self.level)
    }
}

/// Format 2: the archive's master key wrapped with the passphrase
/// (Argon2id, then XChaCha20-Poly1305; docs/FORMAT.md §18.3). Plain data
/// here; dom0 does the cryptography and bounds the parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyWrap {
    /// `argon2id`.
    pub kdf: String,
    /// Argon2 version, 19 (0x13).
    pub version: u32,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// 16 bytes, hex.
    pub salt: String,
    /// 24 bytes, hex.
    pub nonce: String,
    /// The sealed 32-byte master key and its 16-byte tag, hex.
    pub wrapped: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveHeader {
    pub format: String,
    pub format_version: u32,
    pub uuid: String,
    pub chunk_size: ChunkSize,
    pub compression: Compression,
    /// Hash over stored chunk files and chunk contents. Only "sha256".
    pub hash: String,
    /// Chunk and metadata encryption. Only "none" in format 1; a later
    /// version adds authenticated encryption and bumps `format_version`.
    pub encryption: String,
    pub created_utc: String,
    /// Format 2 only: the wrapped master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyWrap>,
    /// Format 2 only: HMAC-SHA256 (hex) under a key derived from the master
    /// key, over this header serialised with `mac` absent; dom0 checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl ArchiveHeader {
    pub fn new(
        uuid: String,
        chunk_size: ChunkSize,
        compression: Compression,
        created_utc: String,
    ) -> Self {
        ArchiveHeader {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            uuid,
            chunk_size,
            compression,
            hash: "sha256".into(),
            encryption: "none".into(),
            created_utc,
            key: None,
            mac: None,
        }
    }

    /// Whether chunks and metadata are sealed (format 2).
    pub fn encrypted(&self) -> bool {
        self.format_version == FORMAT_VERSION_ENCRYPTED
    }

    /// Parse and check that this code can read the archive.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let h: ArchiveHeader = serde_json::from_slice(bytes)
            .map_err(|e| format!("archive header is not valid: {e}"))?;
        if h.format != FORMAT_NAME {
            return Err(format!(
                "archive header names format {:?}, not {FORMAT_NAME}",
                h.format
            ));
        }
        let known = match h.format_version {
            FORMAT_VERSION => h.encryption == "none" && h.key.is_none() && h.mac.is_none(),
            FORMAT_VERSION_ENCRYPTED => {
                h.encryption == ENCRYPTION_XCHACHA && h.key.is_some() && h.mac.is_some()
            }
            v => {
                return Err(format!(
                    "archive format version {v} is not supported (this sparsebak reads versions \
                     {FORMAT_VERSION} and {FORMAT_VERSION_ENCRYPTED})"
                ))
            }
        };
        if h.hash != "sha256" || !known {
            return Err(format!(
                "archive format {} uses hash {:?} / encryption {:?}{}, which this sparsebak cannot read",
                h.format_version,
                h.hash,
                h.encryption,
                if h.format_version == FORMAT_VERSION_ENCRYPTED && (h.key.is_none() || h.mac.is_none()) {
                    " without its wrapped key or mac"
                } else {
                    ""
                }
            ));
        }
        Ok(h)
    }

    /// The header `new_json` if it may replace this one by `RewrapKey`
    /// (arch-passwd): this archive is encrypted and the new header differs
    /// from it only in its wrapped key and MAC. Whoever stores headers (the
    /// agent's backends) cannot check the MAC; dom0 does when it opens the
    /// archive.
    pub fn rewrapped(&self, new_json: &[u8]) -> Result<ArchiveHeader, String> {
        let new = ArchiveHeader::parse(new_json)?;
        let same_but_key = ArchiveHeader {
            key: self.key.clone(),
            mac: self.mac.clone(),
            ..new.clone()
        };
        if !self.encrypted() {
            return Err("the archive is not encrypted: it has no wrapped key to replace".into());
        }
        if same_but_key != *self {
            return Err(
                "the new header differs from the archive's in more than its wrapped key".into(),
            );
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_parse() {
        assert_eq!(
            "zstd".parse::<Compression>().unwrap(),
            Compression::default()
        );
        assert_eq!(
            "zlib:4".parse::<Compression>().unwrap(),
            Compression {
                codec: Codec::Zlib,
                level: 4
            }
        );
        assert!("zlib:10".parse::<Compression>().is_err());
        assert!("zstd:".parse::<Compression>().is_err());
        assert!("lz4:1".parse::<Compression>().is_err());
    }

    #[test]
    fn header_round_trip_and_version_check() {
        let h = ArchiveHeader::new(
            "u".into(),
            ChunkSize::from_factor(1).unwrap(),
            Compression::default(),
            "t".into(),
        );
        let j = serde_json::to_vec(&h).unwrap();
        assert_eq!(ArchiveHeader::parse(&j).unwrap(), h);
        let mut h2 = h.clone();
        h2.format_version = 3;
        let e = ArchiveHeader::parse(&serde_json::to_vec(&h2).unwrap()).unwrap_err();
        assert!(e.contains("version 3"), "{e}");
        h2.format_version = 2;
        let e = ArchiveHeader::parse(&serde_json::to_vec(&h2).unwrap()).unwrap_err();
        assert!(e.contains("without its wrapped key"), "{e}");
        // Format 1 serialises exactly as before format 2 existed.
        assert!(!String::from_utf8(j.clone()).unwrap().contains("\"key\""));
        let mut bad: serde_json::Value = serde_json::to_value(&h).unwrap();
        bad["chunk_size"] = 1000.into();
        assert!(ArchiveHeader::parse(&serde_json::to_vec(&bad).unwrap()).is_err());
    }

    fn encrypted_header() -> ArchiveHeader {
        let mut h = ArchiveHeader::new(
            "u".into(),
            ChunkSize::from_factor(1).unwrap(),
            Compression::default(),
            "t".into(),
        );
        h.format_version = FORMAT_VERSION_ENCRYPTED;
        h.encryption = ENCRYPTION_XCHACHA.into();
        h.key = Some(KeyWrap {
            kdf: "argon2id".into(),
            version: 19,
            memory_kib: 65536,
            iterations: 3,
            parallelism: 1,
            salt: "00".repeat(16),
            nonce: "11".repeat(24),
            wrapped: "22".repeat(48),
        });
        h.mac = Some("33".repeat(32));
        h
    }

    #[test]
    fn rewrap_accepts_a_new_key_and_mac_only() {
        let old = encrypted_header();
        let mut new = old.clone();
        let k = new.key.as_mut().unwrap();
        k.salt = "44".repeat(16);
        k.wrapped = "55".repeat(48);
        k.memory_kib = 262144;
        new.mac = Some("66".repeat(32));
        let json = serde_json::to_vec(&new).unwrap();
        assert_eq!(old.rewrapped(&json).unwrap(), new);
    }

    #[test]
    fn rewrap_refuses_any_other_change() {
        let old = encrypted_header();
        let changes: [fn(&mut ArchiveHeader); 5] = [
            |h| h.uuid = "other".into(),
            |h| h.chunk_size = ChunkSize::from_factor(2).unwrap(),
            |h| h.compression = "zlib:4".parse().unwrap(),
            |h| h.created_utc = "t2".into(),
            // A new key does not carry another change through.
            |h| {
                h.key.as_mut().unwrap().salt = "77".repeat(16);
                h.uuid = "u2".into();
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut new = old.clone();
            change(&mut new);
            let e = old
                .rewrapped(&serde_json::to_vec(&new).unwrap())
                .unwrap_err();
            assert!(e.contains("more than its wrapped key"), "change {i}: {e}");
        }
        // A format 1 header in place of the encrypted one.
        let mut plain = old.clone();
        plain.format_version = FORMAT_VERSION;
        plain.encryption = "none".into();
        plain.key = None;
        plain.mac = None;
        let e = old
            .rewrapped(&serde_json::to_vec(&plain).unwrap())
            .unwrap_err();
        assert!(e.contains("more than its wrapped key"), "{e}");
        // Not a header at all, or one without its key.
        assert!(old.rewrapped(b"{").unwrap_err().contains("not valid"));
        let mut keyless = old.clone();
        keyless.key = None;
        let e = old
            .rewrapped(&serde_json::to_vec(&keyless).unwrap())
            .unwrap_err();
        assert!(e.contains("without its wrapped key"), "{e}");
    }

    #[test]
    fn rewrap_of_a_plain_archive_is_refused() {
        let plain = ArchiveHeader::new(
            "u".into(),
            ChunkSize::from_factor(1).unwrap(),
            Compression::default(),
            "t".into(),
        );
        let e = plain
            .rewrapped(&serde_json::to_vec(&plain).unwrap())
            .unwrap_err();
        assert!(e.contains("not encrypted"), "{e}");
        let e = plain
            .rewrapped(&serde_json::to_vec(&encrypted_header()).unwrap())
            .unwrap_err();
        assert!(e.contains("not encrypted"), "{e}");
    }
}
