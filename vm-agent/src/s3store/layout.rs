//! Object names and the two small formats of an object-store archive
//! (docs/FORMAT.md §21): a session generation's chunk index and its commit.
//!
//! Under the archive root `<prefix>sparsebak/`:
//! `archive.json`, `lock/<gen>`, `data/<32 hex>.pack`, and per session
//! `volumes/<vol>/<S_…>/{manifest,info,index,commit}-<gen>`.

use sha2::{Digest, Sha256};
use sparsebak_common::names::{SessionName, VolName};

/// What a session generation's objects are called, from their root.
pub struct Keys<'a> {
    pub root: &'a str,
}

impl Keys<'_> {
    pub fn header(&self) -> String {
        format!("{}archive.json", self.root)
    }
    pub fn pack(&self, id: &str) -> String {
        format!("{}data/{id}.pack", self.root)
    }
    pub fn data_dir(&self) -> String {
        format!("{}data/", self.root)
    }
    pub fn volumes(&self) -> String {
        format!("{}volumes/", self.root)
    }
    pub fn vol_dir(&self, vol: &VolName) -> String {
        format!("{}volumes/{vol}/", self.root)
    }
    /// `what` is one of `manifest`, `info`, `index`, `commit`.
    pub fn object(&self, vol: &VolName, s: &SessionName, what: &str, gen: u32) -> String {
        format!("{}volumes/{vol}/{s}/{what}-{gen:08x}", self.root)
    }
}

/// `S_…/<kind>-<gen>` relative to a volume dir: session, kind, generation.
pub fn parse_object_key(rel: &str) -> Option<(SessionName, &str, u32)> {
    let (s, rest) = rel.split_once('/')?;
    let (kind, g) = rest.rsplit_once('-')?;
    let ok = g.len() == 8 && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let gen = u32::from_str_radix(g, 16).ok().filter(|g| ok && *g > 0)?;
    Some((SessionName::new(s).ok()?, kind, gen))
}

/// `S_…/commit-<gen>` relative to a volume dir: the session and generation.
pub fn parse_commit_key(rel: &str) -> Option<(SessionName, u32)> {
    match parse_object_key(rel)? {
        (s, "commit", g) => Some((s, g)),
        _ => None,
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    crate::s3::sigv4::hex(&Sha256::digest(b))
}

/// 128 random bits in hex: a pack's id.
pub fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(crate::s3::sigv4::hex(&b))
}

/// Where one chunk file is: in which pack, from which byte, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub addr: u64,
    /// Index into [`Index::packs`].
    pub pack: u32,
    pub offset: u64,
    pub len: u32,
}

/// A session generation's chunk index: the packs it reads and where each of
/// its chunk files is, by address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Index {
    pub packs: Vec<String>,
    /// Sorted by address, no address twice.
    pub locs: Vec<Loc>,
}

const MAGIC: &[u8; 8] = b"SBIDX01\n";
const LOC_BYTES: usize = 24;

impl Index {
    /// `MAGIC`, pack count (u32 LE), 32-hex ids, then 24-byte entries
    /// (address u64, pack u32, offset u64, length u32; little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + self.packs.len() * 32 + self.locs.len() * LOC_BYTES);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.packs.len() as u32).to_le_bytes());
        for p in &self.packs {
            b.extend_from_slice(p.as_bytes());
        }
        for l in &self.locs {
            b.extend_from_slice(&l.addr.to_le_bytes());
            b.extend_from_slice(&l.pack.to_le_bytes());
            b.extend_from_slice(&l.offset.to_le_bytes());
            b.extend_from_slice(&l.len.to_le_bytes());
        }
        b
    }

    /// The reverse of [`Index::encode`], refusing anything it could not have
    /// written (ids not 32 hex, a pack out of range, addresses not
    /// ascending, a chunk longer than `max_chunk`).
    pub fn decode(b: &[u8], max_chunk: u64) -> std::result::Result<Index, String> {
        let rest = b.strip_prefix(MAGIC).ok_or("not a chunk index")?;
        let n = u32::from_le_bytes(rest.get(..4).ok_or("truncated")?.try_into().unwrap()) as usize;
        let rest = &rest[4..];
        let ids = rest
            .get(..n.checked_mul(32).ok_or("bad count")?)
            .ok_or("truncated pack list")?;
        let mut packs = Vec::with_capacity(n);
        for id in ids.chunks(32) {
            let s = std::str::from_utf8(id)
                .ok()
                .filter(|s| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            packs.push(s.ok_or("a pack id is not 32 hex digits")?.to_string());
        }
        let rest = &rest[n * 32..];
        if rest.len() % LOC_BYTES != 0 {
            return Err("truncated entry".into());
        }
        let mut locs = Vec::with_capacity(rest.len() / LOC_BYTES);
        for e in rest.chunks(LOC_BYTES) {
            let u64_at = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap());
            let u32_at = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap());
            let l = Loc {
                addr: u64_at(0),
                pack: u32_at(8),
                offset: u64_at(12),
                len: u32_at(20),
            };
            let past_end = l.offset.checked_add(u64::from(l.len)).is_none();
            if l.pack as usize >= n || u64::from(l.len) > max_chunk || past_end {
                return Err(format!("bad entry for address {:#x}", l.addr));
            }
            if locs.last().is_some_and(|p: &Loc| p.addr >= l.addr) {
                return Err(format!("address {:#x} out of order", l.addr));
            }
            locs.push(l);
        }
        Ok(Index { packs, locs })
    }

    pub fn find(&self, addr: u64) -> Option<usize> {
        self.locs.binary_search_by_key(&addr, |l| l.addr).ok()
    }
}

/// A session generation's commit: what it consists of, each object with its
/// sha256 and size, and the volume record dom0 committed with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Commit {
    pub session: String,
    pub gen: u32,
    pub manifest: Obj,
    pub info: Obj,
    pub index: Obj,
    /// `volume.json` as dom0 sent it with the commit.
    pub volume: String,
    /// Sessions a prune merged into this one (docs/FORMAT.md §21.3): they
    /// are deleted after this commit, and before anything else uses the
    /// volume if that was interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absorbed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Obj {
    pub sha256: String,
    pub size: u64,
}

impl Obj {
    pub fn of(b: &[u8]) -> Obj {
        Obj {
            sha256: sha256_hex(b),
            size: b.len() as u64,
        }
    }
}

/// Largest commit object read.
pub const MAX_COMMIT: u64 = 256 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_refuses_damage() {
        let ix = Index {
            packs: vec!["0".repeat(32), "a".repeat(32)],
            locs: vec![
                Loc {
                    addr: 0,
                    pack: 0,
                    offset: 0,
                    len: 10,
                },
                Loc {
                    addr: 65536,
                    pack: 1,
                    offset: 5,
                    len: 7,
                },
            ],
        };
        let b = ix.encode();
        assert_eq!(Index::decode(&b, 100).unwrap(), ix);
        assert_eq!(ix.find(65536), Some(1));
        assert!(Index::decode(&b, 9).is_err());
        assert!(Index::decode(&b[..b.len() - 1], 100).is_err());
        let mut swapped = ix.clone();
        swapped.locs.reverse();
        assert!(Index::decode(&swapped.encode(), 100).is_err());
        let mut far = ix.clone();
        far.locs[1].pack = 2;
        assert!(Index::decode(&far.encode(), 100).is_err());
        let mut wrap = ix.clone();
        wrap.locs[1].offset = u64::MAX - 3;
        assert!(Index::decode(&wrap.encode(), 100).is_err());
        assert_eq!(
            parse_commit_key("S_20260101-000000/commit-00000002").map(|(s, g)| (s.to_string(), g)),
            Some(("S_20260101-000000".into(), 2))
        );
        for bad in [
            "S_20260101-000000/commit-0000002",
            "S_x/commit-00000001",
            "S_20260101-000000/commit-00000000",
        ] {
            assert!(parse_commit_key(bad).is_none(), "{bad}");
        }
    }
}
