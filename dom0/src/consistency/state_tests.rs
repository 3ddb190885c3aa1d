use super::*;
use crate::local_meta::{SessionInfo, VolumeState};
use sparsebak_common::units::{Bytes, ChunkSize};

fn s(ts: &str) -> SessionName {
    SessionName::from_timestamp(ts).unwrap()
}

/// A local volume whose chain is `names` (info files only; no manifests).
fn commit(meta: &Meta, vol: &VolName, uuid: &str, names: &[&str]) {
    let mut prev = None;
    for (i, n) in names.iter().enumerate() {
        let info = SessionInfo {
            name: s(n),
            sequence: i as u64,
            previous: prev.clone(),
            volsize: Bytes(65536),
            chunk_size: ChunkSize::from_factor(1).unwrap(),
            created_utc: "2026-01-01T00:00:00Z".into(),
            format: "folders".into(),
            chunks: 1,
            stored_chunks: 1,
            stored_bytes: 100,
            manifest_sha256: "0".repeat(64),
        };
        let d = meta.session_dir(vol, &s(n));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("info.json"),
            serde_json::to_vec_pretty(&info).unwrap(),
        )
        .unwrap();
        prev = Some(s(n));
    }
    meta.save_volume(&VolumeState {
        name: vol.clone(),
        uuid: uuid.into(),
        last: prev,
    })
    .unwrap();
}

const A: &str = "20261101-000000";
const B: &str = "20261102-000000";
const C: &str = "20261103-000000";

#[test]
fn each_change_is_the_next_generation_and_the_archive_counts_every_one() {
    let t = tempfile::tempdir().unwrap();
    let meta = Meta::new(t.path());
    let (v, w) = (VolName::new("v").unwrap(), VolName::new("w").unwrap());
    assert_eq!(record(&meta, "arch", &v).unwrap(), None, "never sent");
    commit(&meta, &v, "u1", &[A]);
    let r = record(&meta, "arch", &v).unwrap().unwrap();
    assert_eq!(
        (r.generation, r.sessions, r.last.clone()),
        (1, 1, Some(s(A)))
    );
    // Nothing changed: the same record, no new generation.
    assert_eq!(record(&meta, "arch", &v).unwrap().unwrap(), r);
    commit(&meta, &v, "u1", &[A, B]);
    let r2 = record(&meta, "arch", &v).unwrap().unwrap();
    assert_eq!((r2.generation, r2.sessions), (2, 2));
    assert_ne!(r2.chain_sha256, r.chain_sha256);
    commit(&meta, &w, "u2", &[C]);
    record(&meta, "arch", &w).unwrap();
    let a = archive_record(&meta).unwrap().unwrap();
    assert_eq!(a.generation, 3);
    assert_eq!(a.volumes.get(&v), Some(&2));
    assert_eq!(a.volumes.get(&w), Some(&1));
    // A prune rewrites a session's info.json: a new chain, a new generation.
    let p = meta.session_dir(&v, &s(B)).join("info.json");
    let mut b = std::fs::read(&p).unwrap();
    b.push(b'\n');
    std::fs::write(&p, b).unwrap();
    assert_eq!(record(&meta, "arch", &v).unwrap().unwrap().generation, 3);
    forget(&meta, "arch", &w).unwrap();
    let a = archive_record(&meta).unwrap().unwrap();
    assert_eq!((a.generation, a.volumes.len()), (5, 1));
}

#[test]
fn a_volume_added_again_starts_a_new_count() {
    let t = tempfile::tempdir().unwrap();
    let meta = Meta::new(t.path());
    let v = VolName::new("v").unwrap();
    commit(&meta, &v, "u1", &[A, B]);
    record(&meta, "arch", &v).unwrap();
    commit(&meta, &v, "u1", &[A, B, C]);
    assert_eq!(record(&meta, "arch", &v).unwrap().unwrap().generation, 2);
    std::fs::remove_dir_all(meta.vol_dir(&v)).unwrap();
    commit(&meta, &v, "u9", &[C]);
    let r = record(&meta, "arch", &v).unwrap().unwrap();
    assert_eq!((r.generation, r.uuid.as_str()), (1, "u9"));
}

#[test]
fn the_chain_digest_is_canonical() {
    let d = chain_digest([(&s(A), "aa"), (&s(B), "bb")]);
    // sha256("S_20261101-000000 aa\nS_20261102-000000 bb\n")
    let want = hex::encode(crate::chunk::sha256(
        b"S_20261101-000000 aa\nS_20261102-000000 bb\n",
    ));
    assert_eq!(d, want);
    assert_ne!(d, chain_digest([(&s(B), "bb"), (&s(A), "aa")]));
}
