//! Names in archives written by sparsebak 0.2 ("format 1"), which sparsebak
//! reads but never writes (docs/FORMAT.md §14).
//!
//! Layout under the destination path: `sparsebak/default/<vol>/S_<ts>/<9hex>/x<16hex>`.
//! Both dom0 (reading 0.2's local metadata) and the agent (serving files)
//! validate names with these rules, so a hand-edited or hostile 0.2
//! configuration can never name a path outside that layout.

use crate::names::{parse_chunk_rel_path, NameError, SessionName, VolName};
use crate::units::ByteOffset;
use std::fmt;

/// sparsebak 0.2's archive-set directory (hard-coded there), under
/// `<dest>/sparsebak/` on the destination and under the metadata dir locally.
pub const LEGACY_SET_DIR: &str = "default";

/// A volume name as sparsebak 0.2 accepted it (`^[a-zA-Z0-9+._-]+$`, at most
/// 112 characters), minus the names 0.2 wrongly allowed: `.` and `..`.
/// Unlike [`crate::names::VolName`] it may start with `-` or end in `.tick`,
/// because 0.2 allowed those and its archives may hold them. Every
/// [`VolName`] is one. Carried as a string on the wire (`ReadFiles`).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct LegacyVolName(String);

impl LegacyVolName {
    pub fn new(s: &str) -> Result<Self, NameError> {
        crate::names::check_vol_name(s, false)?;
        Ok(LegacyVolName(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LegacyVolName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        LegacyVolName::new(&s)
    }
}
impl From<LegacyVolName> for String {
    fn from(v: LegacyVolName) -> String {
        v.0
    }
}
impl From<VolName> for LegacyVolName {
    fn from(v: VolName) -> LegacyVolName {
        LegacyVolName(v.into())
    }
}
impl TryFrom<LegacyVolName> for VolName {
    type Error = NameError;
    /// Narrow to this version's rules (no leading `-`, no snapshot suffix).
    fn try_from(v: LegacyVolName) -> Result<VolName, NameError> {
        VolName::try_from(v.0)
    }
}

impl fmt::Display for LegacyVolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a chunk path relative to a 0.2 volume directory:
/// `S_YYYYMMDD-HHMMSS/<9hex>/x<16hex>`, exactly; nothing else (no `-tmp`
/// sessions, no info or manifest files) is ever read from a 0.2 archive.
pub fn parse_legacy_chunk_path(p: &str) -> Result<(SessionName, ByteOffset), NameError> {
    let (ses, rest) = p
        .split_once('/')
        .ok_or_else(|| NameError::ChunkPath(p.to_string()))?;
    let ses = SessionName::new(ses)?;
    Ok((ses, parse_chunk_rel_path(rest)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_volume_names() {
        for ok in ["vm-work-private", "-odd", "a.tick", "x+y_z.1"] {
            assert!(LegacyVolName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "ä", &"x".repeat(113)] {
            assert!(LegacyVolName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legacy_chunk_paths() {
        let (s, a) =
            parse_legacy_chunk_path("S_20190601-120000/000000000/x0000000000030000").unwrap();
        assert_eq!((s.as_str(), a.0), ("S_20190601-120000", 0x30000));
        for bad in [
            "S_20190601-120000/manifest",
            "S_20190601-120000/info",
            "S_20190601-120000-tmp/000000000/x0000000000030000",
            "S_20190601-120000/000000001/x0000000000030000",
            "../S_20190601-120000/000000000/x0000000000030000",
            "S_20190601-120000/000000000/x0000000000030000/..",
            "S_20190601-120000/000000000/X0000000000030000",
        ] {
            assert!(parse_legacy_chunk_path(bad).is_err(), "{bad}");
        }
    }
}
