//! The consistency check (docs/FORMAT.md §17): a destination that lost a
//! session, holds an older copy of one, or is an older copy of the whole
//! archive is refused by send, receive, verify and prune, naming volume and
//! session; `--allow-inconsistent` reads what is still there. The archive
//! is served by the real agent library in process.

use super::harness::{volume_bytes, World, CHUNK, VOL};
use crate::chunk::sha256;
use crate::ops::prune::{prune, PruneOptions};
use crate::ops::receive::{receive, ReceiveOptions};
use crate::ops::send::{send, SendOptions};
use crate::ops::verify::{verify, VerifyOptions};
use sparsebak_common::names::SessionName;
use std::path::{Path, PathBuf};
use std::process::Command;

fn send_all(w: &World) -> anyhow::Result<()> {
    send(&w.ctx(), &w.ui, &SendOptions::default())
}

fn dest_vol(w: &World) -> PathBuf {
    w.path("archive/sparsebak/volumes").join(VOL)
}

fn cp(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Three sessions, each a different state of the volume; what each held.
fn three_sessions(w: &World) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in 0..3 {
        w.lvm.write(VOL, i * CHUNK + 3, &[i as u8 + 1; 200]);
        sent.push(w.lvm.contents(VOL));
        send_all(w).unwrap();
    }
    sent
}

fn receive_opts(w: &World, s: Option<&SessionName>, allow: bool) -> ReceiveOptions {
    ReceiveOptions {
        volume: VOL.into(),
        save_to: Some(w.path("restored.img")),
        session: s.map(|s| s.timestamp().to_string()),
        allow_inconsistent: allow,
    }
}

fn verify_opts(s: Option<&SessionName>, allow: bool) -> VerifyOptions {
    VerifyOptions {
        volume: VOL.into(),
        session: s.map(|s| s.timestamp().to_string()),
        allow_inconsistent: allow,
    }
}

fn prune_opts(s: &SessionName) -> PruneOptions {
    PruneOptions {
        session: Some(s.timestamp().to_string()),
        ..Default::default()
    }
}

fn names(e: &anyhow::Error, s: &SessionName, what: &str) {
    let m = format!("{e:#}");
    let want = format!("volume {VOL}, session {}: {what}", s.timestamp());
    assert!(m.contains(&want), "{want:?} not in: {m}");
}

#[test]
fn a_lost_newest_session_stops_every_command_on_the_volume() {
    let w = World::thin(volume_bytes(8, 1));
    let sent = three_sessions(&w);
    let s = w.sessions();
    std::fs::remove_dir_all(dest_vol(&w).join(s[2].as_str())).unwrap();

    // The hostile-archive finding: nothing changed, and send said so and
    // succeeded, building the next session on one that is gone.
    let e = send_all(&w).unwrap_err();
    names(
        &e,
        &s[2],
        "missing on the destination; it is dom0's newest session",
    );
    assert!(format!("{e:#}").contains("Nothing was written"), "{e:#}");
    let wrote = format!(
        "dom0 wrote generation 3 of it (3 sessions, the newest {})",
        s[2].timestamp()
    );
    assert!(format!("{e:#}").contains(&wrote), "{e:#}");
    // With changes too, and nothing is stored on either side.
    w.lvm.write(VOL, 5, b"new data");
    let e = send_all(&w).unwrap_err();
    names(&e, &s[2], "missing");
    assert_eq!(w.sessions(), s);
    let mut left: Vec<String> = std::fs::read_dir(dest_vol(&w))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [s[0].as_str(), s[1].as_str(), "volume.json"]);

    let e = receive(&w.ctx(), &w.ui, &receive_opts(&w, None, false)).unwrap_err();
    names(&e, &s[2], "missing");
    assert!(format!("{e:#}").contains("--allow-inconsistent"), "{e:#}");
    assert!(
        !w.path("restored.img").exists(),
        "nothing written to the target"
    );
    let e = receive(&w.ctx(), &w.ui, &receive_opts(&w, Some(&s[1]), false)).unwrap_err();
    names(&e, &s[2], "missing");
    let e = verify(&w.ctx(), &w.ui, &verify_opts(Some(&s[0]), false)).unwrap_err();
    names(&e, &s[2], "missing");
    let e = prune(&w.ctx(), &w.ui, &prune_opts(&s[0])).unwrap_err();
    names(&e, &s[2], "missing");
    assert_eq!(w.sessions(), s, "prune changed nothing");
    let d = crate::ops::diff::DiffOptions {
        volume: VOL.into(),
        remap: true,
        session: None,
    };
    let e = crate::ops::diff::diff(&w.ctx(), &w.ui, &d).unwrap_err();
    names(&e, &s[2], "missing");

    // What is still there can be read on request, and is right.
    for (i, want) in sent.iter().enumerate().take(2) {
        receive(&w.ctx(), &w.ui, &receive_opts(&w, Some(&s[i]), true)).unwrap();
        let got = std::fs::read(w.path("restored.img")).unwrap();
        assert_eq!(sha256(&got), sha256(want), "session {}", s[i]);
        let v = verify(&w.ctx(), &w.ui, &verify_opts(Some(&s[i]), true)).unwrap();
        assert!(v.report.bad.is_empty(), "{:?}", v.report.bad);
    }
    // The lost session itself: verify names its missing chunks.
    let v = verify(&w.ctx(), &w.ui, &verify_opts(Some(&s[2]), true)).unwrap();
    assert!(!v.report.bad.is_empty());
}

#[test]
fn a_session_replaced_by_an_older_copy_of_itself_is_refused() {
    let w = World::thin(volume_bytes(8, 2));
    three_sessions(&w);
    let s = w.sessions();
    let old = w.path("old-copy");
    cp(&dest_vol(&w).join(s[1].as_str()), &old);
    // Pruning the oldest session merges it into the second, which changes.
    prune(&w.ctx(), &w.ui, &prune_opts(&s[0])).unwrap();
    let kept = w.sessions();
    assert_eq!(kept, &s[1..]);
    let d = dest_vol(&w).join(s[1].as_str());
    std::fs::remove_dir_all(&d).unwrap();
    cp(&old, &d);

    let e = send_all(&w).unwrap_err();
    names(
        &e,
        &s[1],
        "info.json on the destination differs from dom0's",
    );
    assert!(format!("{e:#}").contains("older copy of itself"), "{e:#}");
    let e = receive(&w.ctx(), &w.ui, &receive_opts(&w, Some(&s[2]), false)).unwrap_err();
    names(&e, &s[1], "info.json on the destination differs");
    let e = verify(&w.ctx(), &w.ui, &verify_opts(None, false)).unwrap_err();
    names(&e, &s[1], "info.json on the destination differs");
}

#[test]
fn an_older_copy_of_the_whole_archive_is_refused() {
    let w = World::thin(volume_bytes(8, 3));
    three_sessions(&w);
    let s = w.sessions();
    let archive = w.path("archive/sparsebak");
    let old = w.path("old-archive");
    cp(&archive, &old);
    w.lvm.write(VOL, 7 * CHUNK, b"later");
    send_all(&w).unwrap();
    prune(&w.ctx(), &w.ui, &prune_opts(&s[0])).unwrap();
    let newest = w.sessions().pop().unwrap();
    std::fs::remove_dir_all(&archive).unwrap();
    cp(&old, &archive);

    let e = send_all(&w).unwrap_err();
    let m = format!("{e:#}");
    names(
        &e,
        &newest,
        "missing on the destination; it is dom0's newest session",
    );
    names(&e, &s[1], "info.json on the destination differs");
    names(&e, &s[0], "on the destination but not in dom0's metadata");
    assert!(m.contains("older state"), "{m}");
    let e = receive(&w.ctx(), &w.ui, &receive_opts(&w, None, false)).unwrap_err();
    names(&e, &newest, "missing");
    let e = prune(&w.ctx(), &w.ui, &prune_opts(&s[1])).unwrap_err();
    names(&e, &newest, "missing");
}

#[test]
fn an_info_file_the_agent_will_not_serve_is_named_with_the_reason() {
    let w = World::thin(volume_bytes(4, 4));
    three_sessions(&w);
    let s = w.sessions();
    let info = dest_vol(&w).join(s[0].as_str()).join("info.json");
    std::fs::remove_file(&info).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &info).unwrap();
    let e = send_all(&w).unwrap_err();
    names(&e, &s[0], "info.json on the destination cannot be read");
    let info = dest_vol(&w).join(s[1].as_str()).join("info.json");
    std::fs::write(&info, vec![b' '; 64 * 1024 + 1]).unwrap();
    let e = send_all(&w).unwrap_err();
    names(
        &e,
        &s[1],
        "info.json on the destination is larger than 65536 bytes",
    );
}

#[test]
fn a_consistent_archive_passes_and_a_session_dom0_never_committed_is_tolerated() {
    let w = World::thin(volume_bytes(4, 5));
    let sent = three_sessions(&w);
    let s = w.sessions();
    // A session the agent committed and dom0 never did (a crash between
    // the two commits, FORMAT.md §7) is newer than dom0's newest.
    let extra = SessionName::from_timestamp("29991231-235959").unwrap();
    cp(
        &dest_vol(&w).join(s[2].as_str()),
        &dest_vol(&w).join(extra.as_str()),
    );
    receive(&w.ctx(), &w.ui, &receive_opts(&w, None, false)).unwrap();
    let got = std::fs::read(w.path("restored.img")).unwrap();
    assert_eq!(sha256(&got), sha256(&sent[2]));
    w.lvm.write(VOL, 9, b"more");
    send_all(&w).unwrap();
    assert_eq!(w.sessions().len(), 4);
}

#[test]
fn every_change_is_recorded_as_the_newest_state_dom0_wrote() {
    use crate::consistency::state::{archive_record, volume_record};
    let w = World::thin(volume_bytes(4, 6));
    let vol = crate::ops::resolve::vol_name(VOL).unwrap();
    three_sessions(&w);
    let gen = |w: &World| volume_record(&w.meta, &vol).unwrap().unwrap().generation;
    assert_eq!(gen(&w), 3);
    // No change, no new generation; a prune is one.
    send_all(&w).unwrap();
    receive(&w.ctx(), &w.ui, &receive_opts(&w, None, false)).unwrap();
    assert_eq!(gen(&w), 3);
    let s = w.sessions();
    prune(&w.ctx(), &w.ui, &prune_opts(&s[0])).unwrap();
    let r = volume_record(&w.meta, &vol).unwrap().unwrap();
    assert_eq!(
        (r.generation, r.sessions, r.last.as_ref()),
        (4, 2, Some(&s[2]))
    );
    let a = archive_record(&w.meta).unwrap().unwrap();
    assert_eq!((a.generation, a.volumes.get(&vol)), (4, Some(&4)));
    let o = crate::ops::delete::DeleteOptions { volume: VOL.into() };
    crate::ops::delete::delete(&mut w.ctx(), &w.ui, &o).unwrap();
    let a = archive_record(&w.meta).unwrap().unwrap();
    assert_eq!((a.generation, a.volumes.len()), (5, 0));
}
