//! Names shared by deduplication (docs/FORMAT.md §12): where a chunk file
//! lives relative to the archive directory, and the tar PAX record that
//! carries the stored hash a hard-link member must point at.
//!
//! A chunk location is written `volumes/<vol>/S_…/<9hex>/x<16hex>`; only that
//! exact spelling parses, so a name the layout could not have produced (`..`,
//! absolute, `-tmp`/`-orphan`/`-pruned` sessions, `.prune-plan`, extra
//! components) is refused by construction.

use crate::names::{chunk_rel_path, parse_chunk_rel_path, NameError, SessionName, VolName};
use crate::units::ByteOffset;

/// PAX record of a hard-link member: the lowercase hex SHA-256 the link
/// target's bytes must have (the manifest's stored hash).
pub const PAX_SHA256: &str = "SPARSEBAK.sha256";
/// PAX record holding a member's link target (POSIX `linkpath`).
pub const PAX_LINKPATH: &str = "linkpath";
/// Directory under the archive dir holding the volumes.
pub const VOLUMES: &str = "volumes";

/// One chunk file in the archive; on the wire (an error reply's
/// `damaged`), its [`ChunkLoc::to_path`] string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChunkLoc {
    pub vol: VolName,
    pub session: SessionName,
    pub addr: ByteOffset,
}

impl ChunkLoc {
    /// `volumes/<vol>/S_…/<9hex>/x<16hex>`, relative to the archive dir.
    pub fn to_path(&self) -> String {
        format!(
            "{VOLUMES}/{}/{}/{}",
            self.vol,
            self.session,
            chunk_rel_path(self.addr)
        )
    }

    /// Parse exactly what [`ChunkLoc::to_path`] produces.
    pub fn parse(p: &str) -> Result<ChunkLoc, NameError> {
        let err = || NameError::ChunkPath(p.to_string());
        let rest = p.strip_prefix("volumes/").ok_or_else(err)?;
        let (vol, rest) = rest.split_once('/').ok_or_else(err)?;
        let (ses, rest) = rest.split_once('/').ok_or_else(err)?;
        let vol = VolName::new(vol)?;
        let session = SessionName::new(ses)?;
        let addr = parse_chunk_rel_path(rest).map_err(|_| err())?;
        Ok(ChunkLoc { vol, session, addr })
    }
}

impl TryFrom<String> for ChunkLoc {
    type Error = NameError;
    fn try_from(s: String) -> Result<ChunkLoc, NameError> {
        ChunkLoc::parse(&s)
    }
}
impl From<ChunkLoc> for String {
    fn from(l: ChunkLoc) -> String {
        l.to_path()
    }
}

/// Parse a lowercase hex SHA-256.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Lowercase hex of a digest.
pub fn hex32(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// One `Dedup` operation (a line of its data stream): replace `dup` by a hard
/// link to `keep`, whose bytes must hash to `sha256`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupOp {
    pub keep: ChunkLoc,
    pub dup: ChunkLoc,
    pub sha256: [u8; 32],
}

impl DedupOp {
    /// `<keep path> <dup path> <sha256>\n`
    pub fn to_line(&self) -> String {
        format!(
            "{} {} {}\n",
            self.keep.to_path(),
            self.dup.to_path(),
            hex32(&self.sha256)
        )
    }
    pub fn parse(line: &str) -> Result<DedupOp, String> {
        let f: Vec<&str> = line.split(' ').collect();
        let [k, d, h] = f.as_slice() else {
            return Err(format!("malformed dedup operation {line:?}"));
        };
        let keep = ChunkLoc::parse(k).map_err(|e| e.to_string())?;
        let dup = ChunkLoc::parse(d).map_err(|e| e.to_string())?;
        let sha256 = parse_sha256(h).ok_or_else(|| format!("bad sha256 {h:?}"))?;
        if keep == dup {
            return Err(format!("dedup operation {line:?} links a file to itself"));
        }
        Ok(DedupOp { keep, dup, sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_loc_round_trip_and_refusals() {
        let l = ChunkLoc {
            vol: VolName::new("vm-a").unwrap(),
            session: SessionName::new("S_20260101-000000").unwrap(),
            addr: ByteOffset(0x30000),
        };
        let p = l.to_path();
        assert_eq!(
            p,
            "volumes/vm-a/S_20260101-000000/000000000/x0000000000030000"
        );
        assert_eq!(ChunkLoc::parse(&p).unwrap(), l);
        for bad in [
            "/volumes/vm-a/S_20260101-000000/000000000/x0000000000030000",
            "volumes/../S_20260101-000000/000000000/x0000000000030000",
            "volumes/vm-a/S_20260101-000000-tmp/000000000/x0000000000030000",
            "volumes/vm-a/S_20260101-000000-orphan/000000000/x0000000000030000",
            "volumes/vm-a/.prune-plan/000000000/x0000000000030000",
            "volumes/vm-a/S_20260101-000000/000000001/x0000000000030000",
            "volumes/vm-a/S_20260101-000000/000000000/x0000000000030000/x",
            "volumes/vm-a/S_20260101-000000/manifest",
            "volumes/vm-a/S_20260101-000000/../../../etc/passwd",
            "vm-a/S_20260101-000000/000000000/x0000000000030000",
        ] {
            assert!(ChunkLoc::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dedup_op_round_trip() {
        let loc = |s: &str| ChunkLoc {
            vol: VolName::new("v").unwrap(),
            session: SessionName::new(s).unwrap(),
            addr: ByteOffset(0),
        };
        let op = DedupOp {
            keep: loc("S_20260101-000000"),
            dup: loc("S_20260102-000000"),
            sha256: [0xab; 32],
        };
        let line = op.to_line();
        assert_eq!(DedupOp::parse(line.trim_end()).unwrap(), op);
        assert!(DedupOp::parse(&line.replace("ab", "AB")).is_err());
        let mut same = op.clone();
        same.dup = same.keep.clone();
        assert!(DedupOp::parse(same.to_line().trim_end()).is_err());
    }
}
