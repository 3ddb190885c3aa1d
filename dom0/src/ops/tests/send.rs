//! send: a full session, then incremental ones read from the thin change
//! map; every session restores to exactly what was sent.

use super::harness::{volume_bytes, World, CHUNK, VOL};
use crate::chunk::sha256;
use crate::lvm::Lvm;
use crate::ops::send::{send, SendOptions};

fn send_all(w: &World) {
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
}

#[test]
fn full_then_incremental_from_the_change_map_and_every_session_restores() {
    let w = World::thin(volume_bytes(16, 1));
    let mut sent = vec![w.lvm.contents(VOL)];
    send_all(&w);
    let r = w.last_sent();
    assert!(r.full && r.session.is_some(), "{r:?}");
    assert_eq!(r.changed_chunks, 16);
    assert_eq!(r.zero_chunks, 4);

    // Two chunks change (one of them a zero chunk getting data).
    w.lvm.write(VOL, 2 * CHUNK + 5, b"changed");
    w.lvm.write(VOL, 3 * CHUNK, &[7u8; 100]);
    sent.push(w.lvm.contents(VOL));
    let deltas = w.lvm.0.borrow().calls.get("thin_delta").copied();
    send_all(&w);
    let r = w.last_sent();
    assert!(!r.full && r.session.is_some(), "{r:?}");
    assert_eq!(r.changed_chunks, 2, "{r:?}");
    assert_eq!(
        r.read_bytes,
        2 * CHUNK as u64,
        "only the changed chunks are read"
    );
    let deltas_after = w.lvm.0.borrow().calls.get("thin_delta").copied();
    assert!(deltas_after > deltas, "the change map came from thin_delta");

    // Nothing changed: no session.
    send_all(&w);
    assert!(w.last_sent().session.is_none());

    // A chunk becomes zero.
    w.lvm.write(VOL, 0, &vec![0u8; CHUNK]);
    sent.push(w.lvm.contents(VOL));
    send_all(&w);
    let r = w.last_sent();
    assert_eq!((r.changed_chunks, r.zero_chunks), (1, 1), "{r:?}");

    let sessions = w.sessions();
    assert_eq!(sessions.len(), sent.len());
    for (s, want) in sessions.iter().zip(&sent) {
        let got = w.restore(s);
        assert_eq!(sha256(&got), sha256(want), "session {s}");
        assert!(got == *want, "session {s}");
    }
}

#[test]
fn a_volume_missing_from_the_pool_is_skipped() {
    let w = World::thin(volume_bytes(4, 2));
    w.lvm.remove("vg", VOL).unwrap();
    send_all(&w);
    assert!(w.ui.sent.borrow().is_empty());
    assert!(w.sessions().is_empty());
}

/// A full send, and a send after the change map is lost, read only the
/// blocks the pool has provisioned: the fake's device holds garbage in the
/// others (which a real thin volume reads as zeros), so a read of one would
/// show in the restore.
#[test]
fn full_and_resync_sends_read_only_the_provisioned_blocks() {
    let w = World::thin(volume_bytes(64, 3));
    w.lvm.discard(VOL, 0, 64 * CHUNK);
    w.lvm.write(VOL, 5 * CHUNK + 9, &[1; 100]);
    w.lvm.write(VOL, 40 * CHUNK + 7, &[2; CHUNK]); // blocks 40 and 41
    w.lvm.write(VOL, 60 * CHUNK, &[0; 10]); // provisioned, reads as zeros
    assert_eq!(w.lvm.mapped(VOL), 4);
    w.lvm.0.borrow_mut().poison_unmapped = true;
    let mut sent = vec![w.lvm.contents(VOL)];
    send_all(&w);
    let r = w.last_sent();
    assert!(r.full, "{r:?}");
    assert_eq!((r.changed_chunks, r.zero_chunks), (64, 61), "{r:?}");
    assert_eq!(
        r.read_bytes,
        4 * CHUNK as u64,
        "only the provisioned blocks are read"
    );

    w.lvm.write(VOL, 20 * CHUNK, b"resync");
    sent.push(w.lvm.contents(VOL));
    let map = w.meta.vol_dir(&vol()).join("deltamap");
    std::fs::remove_file(&map).unwrap();
    send_all(&w);
    let r = w.last_sent();
    assert!(!r.full && r.session.is_some(), "{r:?}");
    // a resync sends every chunk; the unprovisioned ones as zero chunks
    assert_eq!((r.changed_chunks, r.zero_chunks), (64, 60), "{r:?}");

    for (s, want) in w.sessions().iter().zip(&sent) {
        assert!(w.restore(s) == *want, "session {s}");
    }
    assert_eq!(w.sessions().len(), sent.len());
}

/// When thin_dump fails, send reads the whole volume; when its dump
/// contradicts the volume, send refuses and names the volume.
#[test]
fn a_failed_dump_reads_everything_and_an_inconsistent_one_is_refused() {
    let w = World::thin(volume_bytes(16, 4));
    w.lvm.discard(VOL, 0, 8 * CHUNK);
    w.lvm.0.borrow_mut().fail = Some(("mapped_blocks", 0));
    send_all(&w);
    let r = w.last_sent();
    assert!(r.full && r.session.is_some(), "{r:?}");
    assert!(w.restore(&w.sessions()[0]) == w.lvm.contents(VOL));

    w.lvm.0.borrow_mut().dump_inconsistent = true;
    w.lvm.write(VOL, 0, b"x");
    std::fs::remove_file(w.meta.vol_dir(&vol()).join("deltamap")).unwrap();
    let e = send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("provisioned blocks of volume vm-a") && e.contains("inconsistent"),
        "{e}"
    );
    assert_eq!(w.sessions().len(), 1);
}

fn vol() -> sparsebak_common::names::VolName {
    crate::ops::resolve::vol_name(VOL).unwrap()
}

/// Another tool holding the pool's metadata snapshot does not stop a first
/// send: it reads the whole volume.
#[test]
fn a_first_send_reads_everything_while_another_tool_holds_the_metadata_snapshot() {
    let w = World::thin(volume_bytes(8, 5));
    w.lvm.reserve_metadata_snap("vg", "pool").unwrap();
    send_all(&w);
    let r = w.last_sent();
    assert!(r.full && r.session.is_some(), "{r:?}");
    assert!(w.restore(&w.sessions()[0]) == w.lvm.contents(VOL));
}
