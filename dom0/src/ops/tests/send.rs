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
