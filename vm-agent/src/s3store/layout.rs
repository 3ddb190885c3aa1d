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

    /// Where one coalesced read from entry `i` ends: entry `i`, then the
    /// entries after it stored right behind it in the same pack, while the
    /// whole stays within `window` bytes (entry `i` alone may be longer).
    /// No overflow for any index [`Index::decode`] accepts.
    pub fn run_end(&self, i: usize, window: u64) -> u64 {
        let first = self.locs[i];
        let mut end = first.offset + u64::from(first.len);
        for n in &self.locs[i + 1..] {
            let next_end = n.offset + u64::from(n.len);
            if n.pack != first.pack || n.offset != end || next_end - first.offset > window {
                break;
            }
            end = next_end;
        }
        end
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
/// Largest manifest accepted, stored and read.
pub const MAX_MANIFEST: u64 = 1 << 30;
/// Largest info.json accepted, stored and read (as the file-system backend).
pub const MAX_INFO: u64 = 1024 * 1024;
/// Largest index read: 24 bytes a chunk file and 32 a pack, for far more
/// chunk files than a manifest of [`MAX_MANIFEST`] lists.
pub const MAX_INDEX: u64 = 1 << 30;

impl Commit {
    /// A commit object as read from the store for generation `gen` of
    /// session `s`: refused unless it is that session's and generation's
    /// commit, each object it names has a SHA-256 of 64 lowercase hex
    /// digits and a size within its limit (readers fetch that many bytes),
    /// and each session it absorbed is a valid name older than `s` (a prune
    /// merges only older sessions; an absorbed session is deleted).
    pub fn parse(b: &[u8], s: &SessionName, gen: u32) -> std::result::Result<Commit, String> {
        let c: Commit = serde_json::from_slice(b).map_err(|e| format!("not a commit: {e}"))?;
        if c.session != s.as_str() || c.gen != gen {
            return Err(format!(
                "it names session {:?} generation {}",
                c.session.chars().take(64).collect::<String>(),
                c.gen
            ));
        }
        for (what, o, max) in [
            ("manifest", &c.manifest, MAX_MANIFEST),
            ("info", &c.info, MAX_INFO),
            ("index", &c.index, MAX_INDEX),
        ] {
            let hex = o.sha256.len() == 64
                && o.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex {
                return Err(format!("its {what} sha256 is not 64 hex digits"));
            }
            if o.size > max {
                return Err(format!("its {what} size {} is over {max}", o.size));
            }
        }
        for x in &c.absorbed {
            if !SessionName::new(x).is_ok_and(|x| x < *s) {
                return Err("an absorbed session is not a session older than it".into());
            }
        }
        Ok(c)
    }
}

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

    fn loc(addr: u64, pack: u32, offset: u64, len: u32) -> Loc {
        Loc {
            addr,
            pack,
            offset,
            len,
        }
    }

    #[test]
    fn a_coalesced_read_takes_neighbours_in_the_same_pack_up_to_the_window() {
        let ix = Index {
            packs: vec!["0".repeat(32), "a".repeat(32)],
            locs: vec![
                loc(0, 0, 100, 10),
                loc(1, 0, 110, 20),
                loc(2, 0, 130, 5),
                loc(3, 1, 135, 5),
                loc(4, 0, 200, 1),
            ],
        };
        assert_eq!(ix.run_end(0, 1000), 135);
        assert_eq!(ix.run_end(0, 30), 130);
        assert_eq!(ix.run_end(0, 1), 110, "the first entry alone may be longer");
        assert_eq!(ix.run_end(3, 1000), 140);
        assert_eq!(ix.run_end(4, 1000), 201);
        // At the top of the offsets: no overflow (decode refuses past u64).
        let top = Index {
            packs: vec!["0".repeat(32)],
            locs: vec![loc(0, 0, u64::MAX - 8, 4), loc(1, 0, u64::MAX - 4, 4)],
        };
        let top = Index::decode(&top.encode(), 100).unwrap();
        assert_eq!(top.run_end(0, u64::MAX), u64::MAX);
    }

    fn commit_bytes(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let o = |n: u64| serde_json::json!({"sha256": "ab".repeat(32), "size": n});
        let mut v = serde_json::json!({
            "session": "S_20260102-000000", "gen": 2, "manifest": o(100), "info": o(50),
            "index": o(36), "volume": "{}", "absorbed": ["S_20260101-000000"],
        });
        edit(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn a_commit_from_the_store_is_refused_unless_it_is_bounded_and_its_own() {
        let s = SessionName::new("S_20260102-000000").unwrap();
        let c = Commit::parse(&commit_bytes(|_| {}), &s, 2).unwrap();
        assert_eq!(c.absorbed, ["S_20260101-000000"]);
        assert_eq!(
            Commit::parse(&serde_json::to_vec(&c).unwrap(), &s, 2),
            Ok(c)
        );
        assert!(Commit::parse(&commit_bytes(|_| {}), &s, 3).is_err());
        let other = SessionName::new("S_20260103-000000").unwrap();
        assert!(Commit::parse(&commit_bytes(|_| {}), &other, 2).is_err());
        type Edit = fn(&mut serde_json::Value);
        let bad: [(Edit, &str); 8] = [
            (|v| v["index"]["size"] = u64::MAX.into(), "index size"),
            (
                |v| v["manifest"]["size"] = (MAX_MANIFEST + 1).into(),
                "manifest size",
            ),
            (|v| v["info"]["size"] = (MAX_INFO + 1).into(), "info size"),
            (
                |v| v["info"]["sha256"] = "AB".repeat(32).into(),
                "info sha256",
            ),
            (|v| v["index"]["sha256"] = "ab".into(), "index sha256"),
            (
                |v| v["absorbed"] = serde_json::json!(["S_20260102-000000"]),
                "absorbed",
            ),
            (
                |v| v["absorbed"] = serde_json::json!(["S_20260103-000000"]),
                "absorbed",
            ),
            (|v| v["absorbed"] = serde_json::json!(["../x"]), "absorbed"),
        ];
        for (edit, what) in bad {
            let e = Commit::parse(&commit_bytes(edit), &s, 2).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        assert!(Commit::parse(b"{", &s, 2)
            .unwrap_err()
            .starts_with("not a commit"));
    }
}
