//! Validated names and the chunk-file layout.
//!
//! Every name that reaches a path is validated once, at construction: a
//! [`VolName`] or [`SessionName`] that exists is safe to join onto a directory.
//! Parsing a relative chunk path accepts only what [`chunk_rel_path`] produces.

use crate::units::ByteOffset;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted volume name (LVM allows 127; the snapshot suffix needs room).
pub const MAX_VOL_NAME: usize = 112;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid volume name {0:?}: {1}")]
    Volume(String, &'static str),
    #[error("invalid session name {0:?}: expected S_YYYYMMDD-HHMMSS")]
    Session(String),
    #[error("invalid chunk path {0:?}: expected <9 hex>/x<16 hex>")]
    ChunkPath(String),
}

/// A volume name: `[A-Za-z0-9+._-]`, 1 to 112 characters, not `.` or `..`,
/// not starting with `-`, and not ending in a snapshot suffix sparsebak uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VolName(String);

impl VolName {
    pub fn new(s: &str) -> Result<Self, NameError> {
        check_vol_name(s, true)?;
        Ok(VolName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The volume name rules: those of sparsebak 0.2 (`[A-Za-z0-9+._-]`, 1 to
/// 112 characters, not `.` or `..`), and with `ours` also no leading `-`
/// and no snapshot suffix. Checked in this order, so the first broken rule
/// is the one reported.
pub(crate) fn check_vol_name(s: &str, ours: bool) -> Result<(), NameError> {
    let bad = |why| Err(NameError::Volume(s.to_string(), why));
    if s.is_empty() {
        return bad("it is empty");
    }
    if s.len() > MAX_VOL_NAME {
        return bad("it is longer than 112 characters");
    }
    if s == "." || s == ".." {
        return bad("'.' and '..' are not volume names");
    }
    if ours && s.starts_with('-') {
        return bad("it must not start with '-'");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
    {
        return bad("only letters, digits and + . _ - are allowed");
    }
    if ours && (s.ends_with(".tick") || s.ends_with(".tock")) {
        return bad("the suffixes .tick and .tock are reserved for sparsebak's snapshots");
    }
    Ok(())
}

impl TryFrom<String> for VolName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        VolName::new(&s)
    }
}
impl From<VolName> for String {
    fn from(v: VolName) -> String {
        v.0
    }
}
impl fmt::Display for VolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session name `S_YYYYMMDD-HHMMSS` (UTC). Names sort in time order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionName(String);

/// Suffix of a session directory that is being written.
pub const TMP_SUFFIX: &str = "-tmp";

impl SessionName {
    pub fn new(s: &str) -> Result<Self, NameError> {
        let err = || NameError::Session(s.to_string());
        let ts = s.strip_prefix("S_").ok_or_else(err)?;
        let fields = parse_timestamp(ts).ok_or_else(err)?;
        let _ = fields;
        Ok(SessionName(s.to_string()))
    }
    /// From a bare timestamp `YYYYMMDD-HHMMSS` as given to `--session`.
    pub fn from_timestamp(ts: &str) -> Result<Self, NameError> {
        let ts = ts.strip_prefix("S_").unwrap_or(ts);
        SessionName::new(&format!("S_{ts}"))
    }
    /// From broken-down UTC time.
    pub fn from_parts(t: [u32; 6]) -> Result<Self, NameError> {
        SessionName::new(&format!(
            "S_{:04}{:02}{:02}-{:02}{:02}{:02}",
            t[0], t[1], t[2], t[3], t[4], t[5]
        ))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The timestamp part, `YYYYMMDD-HHMMSS`.
    pub fn timestamp(&self) -> &str {
        &self.0[2..]
    }
    /// Year, month, day, hour, minute, second.
    pub fn parts(&self) -> [u32; 6] {
        parse_timestamp(self.timestamp()).expect("validated at construction")
    }
    /// Directory name while the session is being written.
    pub fn tmp_dir_name(&self) -> String {
        format!("{}{TMP_SUFFIX}", self.0)
    }
}

fn parse_timestamp(ts: &str) -> Option<[u32; 6]> {
    let b = ts.as_bytes();
    if b.len() != 15 || b[8] != b'-' {
        return None;
    }
    if !b[..8].iter().chain(&b[9..]).all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u32>().ok();
    let t = [
        n(0..4)?,
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    ];
    let ok = (1970..=9999).contains(&t[0])
        && (1..=12).contains(&t[1])
        && (1..=31).contains(&t[2])
        && t[3] < 24
        && t[4] < 60
        && t[5] < 61;
    ok.then_some(t)
}

impl TryFrom<String> for SessionName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        SessionName::new(&s)
    }
}
impl From<SessionName> for String {
    fn from(v: SessionName) -> String {
        v.0
    }
}
impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fan-out directory of a chunk: the first 9 of its 16 hex address digits,
/// so one directory covers 256 MiB of volume.
pub fn chunk_dir_name(addr: ByteOffset) -> String {
    format!("{:016x}", addr.0)[..9].to_string()
}

/// File name of a chunk: `x` and 16 lowercase hex digits of its address.
pub fn chunk_file_name(addr: ByteOffset) -> String {
    format!("x{:016x}", addr.0)
}

/// Path of a chunk relative to its session directory: `<9hex>/x<16hex>`.
pub fn chunk_rel_path(addr: ByteOffset) -> String {
    format!("{}/{}", chunk_dir_name(addr), chunk_file_name(addr))
}

/// Parse `x<16hex>` (lowercase only).
pub fn parse_chunk_file_name(name: &str) -> Option<ByteOffset> {
    let hex = name.strip_prefix('x')?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(ByteOffset)
}

/// Parse a relative chunk path; only the exact form [`chunk_rel_path`] makes
/// is accepted (no `.`, `..`, extra components or mismatched fan-out dir).
pub fn parse_chunk_rel_path(path: &str) -> Result<ByteOffset, NameError> {
    let err = || NameError::ChunkPath(path.to_string());
    let (dir, file) = path.split_once('/').ok_or_else(err)?;
    let addr = parse_chunk_file_name(file).ok_or_else(err)?;
    if dir != chunk_dir_name(addr) {
        return Err(err());
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        for ok in ["vm-work-private", "a", "x.y_z+1", &"a".repeat(112)] {
            assert!(VolName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "/abs",
            "a b",
            "a;rm",
            "$(x)",
            "`x`",
            "-rf",
            "a\nb",
            &"a".repeat(113),
            "v.tick",
            "v.tock",
            "é",
        ] {
            assert!(VolName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_names() {
        let s = SessionName::new("S_20260102-030405").unwrap();
        assert_eq!(s.parts(), [2026, 1, 2, 3, 4, 5]);
        assert_eq!(s.tmp_dir_name(), "S_20260102-030405-tmp");
        assert_eq!(SessionName::from_timestamp("20260102-030405").unwrap(), s);
        for bad in [
            "S_2026010-030405",
            "S_20261302-030405",
            "20260102-030405",
            "S_20260102_030405",
            "S_20260102-030405-tmp",
            "S_../../etc",
            "S_2026010a-030405",
        ] {
            assert!(SessionName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunk_paths_round_trip() {
        for a in [0u64, 0x30000, 0x1234_5678_9abc_0000, u64::MAX - 0xffff] {
            let p = chunk_rel_path(ByteOffset(a));
            assert_eq!(parse_chunk_rel_path(&p).unwrap(), ByteOffset(a));
        }
        assert_eq!(
            chunk_rel_path(ByteOffset(0x30000)),
            "000000000/x0000000000030000"
        );
        for bad in [
            "000000000/x00000000000300000",
            "000000001/x0000000000030000",
            "../x0000000000030000",
            "000000000/../x0000000000030000",
            "000000000/X0000000000030000",
            "000000000/x000000000003000A",
            "/000000000/x0000000000030000",
            "000000000/x0000000000030000/",
        ] {
            assert!(parse_chunk_rel_path(bad).is_err(), "{bad}");
        }
    }
}
