use super::catalog::Catalog;
use super::disk::IndexBuilder;
use super::run::{LinkSource, RunDedup, RUN_CAP};
use super::*;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::{ByteOffset, ChunkSize};

/// A deterministic pseudo-random key stream (splitmix64).
fn key(i: u64) -> Key {
    let mut out = [0u8; KEY_LEN];
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for c in out.chunks_mut(8) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 29;
        c.copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn loc(session: u32, chunk: u32) -> IndexLoc {
    IndexLoc { session, chunk }
}

#[test]
fn disk_index_finds_every_key_and_keeps_the_first_occurrence() {
    let t = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::new(t.path()).unwrap();
    let n = 50_000u64;
    // Pushed newest first, so "first occurrence" must come from sorting.
    for i in (0..n).rev() {
        b.push(&key(i), loc(5, i as u32)).unwrap();
        if i % 10 == 0 {
            b.push(&key(i), loc(2, 7)).unwrap();
            b.push(&key(i), loc(2, 3)).unwrap();
        }
    }
    assert_eq!(b.pushed(), n + 2 * (n / 10));
    let idx = b.finish().unwrap();
    assert_eq!(idx.len(), n);
    for i in 0..n {
        let want = if i % 10 == 0 {
            loc(2, 3)
        } else {
            loc(5, i as u32)
        };
        assert_eq!(idx.lookup(&key(i)).unwrap(), Some(want), "key {i}");
    }
    for i in n..n + 10_000 {
        assert_eq!(idx.lookup(&key(i)).unwrap(), None);
    }
    // Only the sorted index is left: the buckets were consumed.
    let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn disk_index_edge_keys_and_empty_index() {
    let t = tempfile::tempdir().unwrap();
    let idx = IndexBuilder::new(t.path()).unwrap().finish().unwrap();
    assert!(idx.is_empty());
    assert_eq!(idx.lookup(&[0u8; KEY_LEN]).unwrap(), None);
    let t = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::new(t.path()).unwrap();
    let lo = [0u8; KEY_LEN];
    let hi = [0xffu8; KEY_LEN];
    let mut near = hi;
    near[15] = 0xfe;
    b.push(&hi, loc(1, 1)).unwrap();
    b.push(&lo, loc(0, 0)).unwrap();
    b.push(&near, loc(3, 3)).unwrap();
    let idx = b.finish().unwrap();
    assert_eq!(idx.lookup(&lo).unwrap(), Some(loc(0, 0)));
    assert_eq!(idx.lookup(&hi).unwrap(), Some(loc(1, 1)));
    assert_eq!(idx.lookup(&near).unwrap(), Some(loc(3, 3)));
    let mut other = hi;
    other[15] = 0xfd;
    assert_eq!(idx.lookup(&other).unwrap(), None);
}

#[test]
fn mem_index_keeps_the_first_occurrence() {
    let mut m = MemIndex::default();
    m.insert(key(1), loc(3, 0));
    m.insert(key(1), loc(1, 9));
    m.insert(key(1), loc(2, 0));
    assert_eq!(m.lookup(&key(1)).unwrap(), Some(loc(1, 9)));
}

fn catalog(sessions: &[(&str, &str)]) -> Catalog {
    Catalog {
        sessions: sessions
            .iter()
            .map(|(v, s)| catalog::SessionRef {
                vol: VolName::new(v).unwrap(),
                session: SessionName::new(s).unwrap(),
                manifest: "/nonexistent".into(),
                stored_chunks: 0,
            })
            .collect(),
        chunk_size: ChunkSize::from_factor(1).unwrap(),
    }
}

fn digest(i: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..16].copy_from_slice(&key(i));
    d[16..].copy_from_slice(&key(i + 1_000_000));
    d
}

#[test]
fn run_dedup_prefers_the_archive_then_this_run_and_forgets_failed_sessions() {
    let mut m = MemIndex::default();
    m.insert(key_of(&digest(1)), loc(0, 4));
    let cat = catalog(&[("old", "S_20260101-000000")]);
    let mut r = RunDedup::new(Box::new(m), cat, None);
    let (va, vb) = (VolName::new("a").unwrap(), VolName::new("b").unwrap());
    let s1 = SessionName::new("S_20260201-000000").unwrap();
    let s2 = SessionName::new("S_20260202-000000").unwrap();
    // In the archive: link to the indexed file.
    let l = r
        .link_for(&va, &s1, &digest(1), ByteOffset(0))
        .unwrap()
        .unwrap();
    assert_eq!(
        l.to_path(),
        "volumes/old/S_20260101-000000/000000000/x0000000000040000"
    );
    // New: send it; the same bytes later in the same session link to it.
    assert!(r
        .link_for(&va, &s1, &digest(2), ByteOffset(0x10000))
        .unwrap()
        .is_none());
    let l = r
        .link_for(&va, &s1, &digest(2), ByteOffset(0x20000))
        .unwrap()
        .unwrap();
    assert_eq!(
        (l.vol.as_str(), l.session.as_str(), l.addr.0),
        ("a", s1.as_str(), 0x10000)
    );
    // The session failed: its chunks are no link targets for the next one.
    r.end_session(false);
    assert!(r
        .link_for(&vb, &s2, &digest(2), ByteOffset(0))
        .unwrap()
        .is_none());
    r.end_session(true);
    let s3 = SessionName::new("S_20260203-000000").unwrap();
    let l = r
        .link_for(&va, &s3, &digest(2), ByteOffset(0x50000))
        .unwrap()
        .unwrap();
    assert_eq!(
        (l.vol.as_str(), l.session.as_str(), l.addr.0),
        ("b", s2.as_str(), 0)
    );
}

#[test]
fn run_dedup_stops_remembering_at_the_cap() {
    let cat = catalog(&[]);
    let mut r = RunDedup::new(Box::new(MemIndex::default()), cat, None);
    let v = VolName::new("a").unwrap();
    let s = SessionName::new("S_20260201-000000").unwrap();
    for i in 0..RUN_CAP as u64 + 3 {
        assert!(r
            .link_for(&v, &s, &digest(i), ByteOffset(i << 16))
            .unwrap()
            .is_none());
    }
    assert_eq!(r.remembered(), RUN_CAP);
    assert_eq!(r.over_cap, 3);
    // Remembered chunks still link; the ones past the cap are sent again.
    assert!(r
        .link_for(&v, &s, &digest(0), ByteOffset(1 << 30))
        .unwrap()
        .is_some());
    let past = RUN_CAP as u64 + 1;
    assert!(r
        .link_for(&v, &s, &digest(past), ByteOffset(1 << 31))
        .unwrap()
        .is_none());
}

/// Pins the link member's wire format (docs/FORMAT.md §12.2).
#[test]
fn link_member_wire_format_golden() {
    let target = sparsebak_common::linkref::ChunkLoc {
        vol: VolName::new("vm-a").unwrap(),
        session: SessionName::new("S_20260101-000000").unwrap(),
        addr: ByteOffset(0x30000),
    };
    let mut b = tar::Builder::new(Vec::new());
    wire::append_link(&mut b, "000000000/x0000000000050000", &target, &[0xab; 32]).unwrap();
    let bytes = b.into_inner().unwrap();
    // A PAX header block, its records block, the link header block, and
    // the two zero blocks that end a tar archive.
    assert_eq!(bytes.len(), 5 * 512);
    let pax = String::from_utf8_lossy(&bytes[512..1024]);
    assert!(
        pax.starts_with("71 linkpath=volumes/vm-a/S_20260101-000000/000000000/x0000000000030000\n")
    );
    assert!(pax.contains(&format!("85 SPARSEBAK.sha256={}\n", "ab".repeat(32))));
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut entries = ar.entries().unwrap();
    let mut e = entries.next().unwrap().unwrap();
    assert_eq!(e.header().entry_type(), tar::EntryType::Link);
    assert_eq!(e.size(), 0);
    assert_eq!(&*e.path_bytes(), b"000000000/x0000000000050000");
    assert_eq!(
        &*e.link_name_bytes().unwrap(),
        b"volumes/vm-a/S_20260101-000000/000000000/x0000000000030000"
    );
    let sha = e
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|x| x.unwrap())
        .find(|x| x.key() == Ok("SPARSEBAK.sha256"))
        .map(|x| x.value().unwrap().to_string());
    assert_eq!(sha, Some("ab".repeat(32)));
    assert!(entries.next().is_none());
}

#[test]
fn run_dedup_never_links_to_an_avoided_file_again() {
    let mut m = MemIndex::default();
    m.insert(key_of(&digest(1)), loc(0, 4));
    let cat = catalog(&[("old", "S_20260101-000000")]);
    let mut r = RunDedup::new(Box::new(m), cat, None);
    let v = VolName::new("a").unwrap();
    let s1 = SessionName::new("S_20260201-000000").unwrap();
    let bad = r
        .link_for(&v, &s1, &digest(1), ByteOffset(0))
        .unwrap()
        .unwrap();
    r.end_session(false);
    assert!(r.avoid(bad.clone()));
    assert!(!r.avoid(bad), "already avoided");
    let s2 = SessionName::new("S_20260202-000000").unwrap();
    assert!(r
        .link_for(&v, &s2, &digest(1), ByteOffset(0))
        .unwrap()
        .is_none());
    let l = r
        .link_for(&v, &s2, &digest(1), ByteOffset(0x10000))
        .unwrap()
        .unwrap();
    assert_eq!((l.session.as_str(), l.addr.0), (s2.as_str(), 0));
    r.end_session(true);
    // A file of this run can be avoided too.
    assert!(r.avoid(l));
    let s3 = SessionName::new("S_20260203-000000").unwrap();
    assert!(r
        .link_for(&v, &s3, &digest(1), ByteOffset(0))
        .unwrap()
        .is_none());
}
