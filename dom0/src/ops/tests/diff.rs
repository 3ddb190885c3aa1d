//! diff: compare the snapshot with the latest session; with remap, flag
//! the differences so the next send repairs the archive.

use super::harness::{volume_bytes, World, CHUNK, VOL};
use crate::ops::diff::{diff, DiffOptions};
use crate::ops::send::{send, SendOptions};
use sparsebak_common::units::ByteOffset;

fn opts(remap: bool) -> DiffOptions {
    DiffOptions {
        volume: VOL.into(),
        remap,
        session: None,
    }
}

#[test]
fn without_remap_reports_and_with_remap_the_next_send_repairs() {
    let w = World::thin(volume_bytes(8, 5));
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
    let r = diff(&w.ctx(), &w.ui, &opts(false)).unwrap();
    assert!(r.differ.is_empty() && !r.flagged, "{r:?}");
    assert_eq!(r.chunks, 8);

    // The snapshot the archive was read from no longer matches it (as
    // after a lost change map): diff sees it, only remap flags it.
    let tick = format!("{VOL}.tick");
    w.lvm.write(&tick, 2 * CHUNK, b"drift");
    w.lvm.write(&tick, 7 * CHUNK + 9, b"drift");
    let r = diff(&w.ctx(), &w.ui, &opts(false)).unwrap();
    let want = [ByteOffset(2 * CHUNK as u64), ByteOffset(7 * CHUNK as u64)];
    assert_eq!(r.differ, want);
    assert!(!r.flagged);

    let r = diff(&w.ctx(), &w.ui, &opts(true)).unwrap();
    assert_eq!(r.differ, want);
    assert!(r.flagged);
    send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
    assert_eq!(w.last_sent().changed_chunks, 2);
    let latest = w.sessions().pop().unwrap();
    assert!(w.restore(&latest) == w.lvm.contents(VOL));
    let r = diff(&w.ctx(), &w.ui, &opts(false)).unwrap();
    assert!(r.differ.is_empty(), "{r:?}");
}

#[test]
fn refuses_a_session_and_a_volume_without_sessions() {
    let w = World::thin(volume_bytes(2, 6));
    let e = diff(&w.ctx(), &w.ui, &opts(false)).unwrap_err();
    assert!(format!("{e:#}").contains("has no sessions to compare with"));
    let o = DiffOptions {
        session: Some("20260101-000000".into()),
        ..opts(false)
    };
    let e = diff(&w.ctx(), &w.ui, &o).unwrap_err();
    assert!(format!("{e:#}").contains("diff always compares with the latest session"));
}
