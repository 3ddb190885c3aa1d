//! `send --tarfile`: sessions stored on the destination as one tar file
//! (docs/FORMAT.md §13), mixed with folder sessions. Every session restores
//! to the sha256 of the image it was sent from, verify passes, damage is
//! reported by chunk and session, a full disk and a low open-file limit are
//! handled. Prune with tar sessions: `tarfile_prune.rs`.

use crate::common::*;
use crate::prune_support::*;
use crate::tarfile_support::*;
use std::path::Path;

#[test]
fn tar_and_folder_sessions_each_restore_exactly() {
    let h = Hist::with_tar(&standard_steps(), &[T, T, F, T, F, T]);
    let names = h.names();
    h.check(&names);
    let sessions = h.e.sessions(VOL);
    for (i, s) in sessions.iter().enumerate() {
        let want = if [0, 1, 3, 5].contains(&i) {
            "tar"
        } else {
            "folders"
        };
        assert_eq!(s["format"], want, "session {i}");
    }
    let list = h.e.ok(&["list", VOL]);
    for (i, line) in list.lines().skip(1).enumerate() {
        assert_eq!(
            line.ends_with(" (tar)"),
            [0, 1, 3, 5].contains(&i),
            "{list}"
        );
    }
    // A tar session holds no chunk files, one tar file any GNU tar lists,
    // with one member per stored chunk, and its index.
    let full = sdir(&h, &names[0]);
    assert!(fan_dirs(&full).is_empty(), "{:?}", fan_dirs(&full));
    let members = tar_list(&full.join("chunks.tar"));
    assert_eq!(
        members.len() as u64,
        sessions[0]["stored_chunks"].as_u64().unwrap()
    );
    assert!(
        members
            .iter()
            .all(|m| m.len() == 9 + 1 + 17 && m.as_bytes()[9] == b'/'),
        "{members:?}"
    );
    let idx = std::fs::metadata(full.join("chunks.idx")).unwrap().len();
    assert_eq!(idx, 16 + 24 * members.len() as u64);
    // A folder session is as before.
    assert!(!sdir(&h, &names[2]).join("chunks.tar").exists());
    assert!(!h.e.chunk_files(VOL, &names[2]).is_empty());
}

/// (addr, data offset) of index entry `i` of a part.
fn idx_entry(idx: &Path, i: usize) -> (u64, u64) {
    let b = std::fs::read(idx).unwrap();
    let e = &b[16 + 24 * i..16 + 24 * (i + 1)];
    let u = |k: usize| u64::from_le_bytes(e[k..k + 8].try_into().unwrap());
    (u(0), u(8))
}

/// verify exits 3 naming `needles` (a part whose index is refused makes
/// every chunk read from it bad, not only those past the damage), receive of `session` exits 1 and
/// leaves no file behind; restoring `good` makes verify pass again.
fn damaged(h: &Hist, session: &str, file: &Path, good: Vec<u8>, needles: &[&str]) {
    let v = h.e.run(&["verify", VOL]);
    let mut want = vec!["FAILED: ", " bad chunk(s)"];
    want.extend_from_slice(needles);
    v.expect(3, &want);
    let target = h.e.path("restore.img");
    let save = format!("--save-to={}", target.display());
    let ses = format!("--session={session}");
    h.e.run(&["receive", VOL, &save, &ses]).expect(1, needles);
    assert!(!target.exists(), "receive left its target behind");
    std::fs::write(file, good).unwrap();
    h.e.verify_ok(VOL);
}

#[test]
fn damaged_tar_or_index_is_reported_by_chunk_and_session() {
    let steps: Vec<Step> = vec![
        |p| write_file(p, &realistic_bytes(2 * MIB + 5000, 1)),
        |p| write_at(p, 100_000, &random_bytes(200_000, 2)),
    ];
    let h = Hist::with_tar(&steps, &[T, T]);
    let n = h.names();
    let (s0, s1) = (sdir(&h, &n[0]), sdir(&h, &n[1]));

    // A flipped byte inside a member of the newest session.
    let tar = s1.join("chunks.tar");
    let good = std::fs::read(&tar).unwrap();
    let (addr, off) = idx_entry(&s1.join("chunks.idx"), 0);
    let mut bad = good.clone();
    bad[off as usize + 20] ^= 0x40;
    std::fs::write(&tar, &bad).unwrap();
    let chunk = format!("chunk 0x{addr:x} of {VOL} from S_{}: hash mismatch", n[1]);
    damaged(&h, &n[1], &tar, good, &[&chunk]);

    // The full session's tar cut in half: its index points past the end.
    let tar = s0.join("chunks.tar");
    let good = std::fs::read(&tar).unwrap();
    std::fs::write(&tar, &good[..good.len() / 2]).unwrap();
    let who = format!("from S_{}: the agent refused it", n[0]);
    let part = format!("S_{}/chunks.tar: index entry", n[0]);
    damaged(
        &h,
        &n[0],
        &tar,
        good,
        &[&who, &part, "past the end of the tar file"],
    );

    // A truncated index.
    let idx = s1.join("chunks.idx");
    let good = std::fs::read(&idx).unwrap();
    std::fs::write(&idx, &good[..good.len() - 10]).unwrap();
    let who = format!("from S_{}: the agent refused it", n[1]);
    damaged(
        &h,
        &n[1],
        &idx,
        good,
        &[&who, "not a whole number of entries"],
    );
    h.check(&n);
}

#[test]
fn tarfile_is_a_send_option_only() {
    let e = Env::new();
    e.init(&[]);
    e.run(&["list", "--tarfile"])
        .expect(2, &["unexpected argument '--tarfile'"]);
}

#[test]
fn tar_sessions_with_large_chunks() {
    let e = Env::new();
    e.init(&["--chunk-factor=4"]);
    let img = e.img(VOL);
    write_file(&img, &realistic_bytes(3 * MIB + 1234, 31));
    e.ok(&["add", VOL]);
    e.ok(&["send", "-u", "--tarfile"]);
    let first = sha256_file(&img);
    write_at(&img, MIB - 7, &random_bytes(300_000, 32));
    e.ok(&["send", "-u", "--tarfile"]);
    let n = e.session_names(VOL);
    assert_eq!(e.receive_sha(VOL, Some(&n[0]), "r0"), first);
    assert_eq!(e.receive_sha(VOL, Some(&n[1]), "r1"), sha256_file(&img));
    e.verify_ok(VOL);
}

/// `sparsebak ARGS` (and so its agent) with a soft limit of 64 open files.
fn run_low_fd_limit(e: &Env, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 64 && exec \"$@\"", "sh"])
        .arg(sparsebak_bin())
        .args(args)
        .env("SPARSEBAK_META_DIR", &e.meta)
        .env("SPARSEBAK_AGENT", agent_bin())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// A session that inherited 40 parts (80 descriptors to read it) is pruned
/// and restored under a soft limit of 64 open files: the agent raises its
/// soft limit to the hard one.
#[test]
fn a_session_with_many_parts_is_read_under_a_low_soft_fd_limit() {
    let e = Env::new();
    e.init(&[]);
    let img = e.img(VOL);
    write_file(&img, &random_bytes(48 * CHUNK, 50));
    e.ok(&["add", VOL]);
    e.ok(&["send", "-u", "--tarfile"]);
    for i in 1..=40u64 {
        write_at(&img, i * CHUNK, &random_bytes(CHUNK, 50 + i));
        e.ok(&["send", "-u", "--tarfile"]);
    }
    let n = e.session_names(VOL);
    assert_eq!(n.len(), 41);
    let range = format!("--session={},{}", n[0], n[39]);
    let o = run_low_fd_limit(&e, &["prune", VOL, "-u", &range]);
    assert!(o.status.success(), "{o:#?}");
    let parts = e
        .vol_archive_dir(VOL)
        .join(format!("S_{}", n[40]))
        .join("parts");
    assert_eq!(std::fs::read_dir(&parts).unwrap().count(), 80);
    let target = e.path("restored");
    let save = format!("--save-to={}", target.display());
    let o = run_low_fd_limit(&e, &["receive", VOL, &save]);
    assert!(o.status.success(), "{o:#?}");
    assert_eq!(sha256_file(&target), sha256_file(&img));
    let o = run_low_fd_limit(&e, &["verify", VOL]);
    assert!(o.status.success(), "{o:#?}");
}

/// A tar send onto a full disk fails like a folder send: nothing recorded,
/// no temporary session left, and a later send succeeds once there is room.
#[test]
fn tar_send_onto_a_full_disk() {
    if !have_root("tar_send_onto_a_full_disk") {
        return;
    }
    let e = Env::new();
    let m = Mount::tmpfs(&e.path("mnt"), "3m");
    let d = format!("--dest=internal:{}", m.0.display());
    let src = format!("--source=dir:{}", e.src.display());
    e.ok(&["arch-init", &d, "--subdir=archive", &src, "--encrypt=off"]);
    write_file(&e.img(VOL), &random_bytes(16 * MIB, 60));
    e.ok(&["add", VOL]);
    e.run(&["send", "-u", "--tarfile"]).expect(
        1,
        &[
            "send of volume vm-data failed; the previous sessions are intact",
            "destination is full",
        ],
    );
    assert!(e.sessions(VOL).is_empty());
    let vdir = m.0.join("archive/sparsebak/volumes").join(VOL);
    let left: Vec<String> = std::fs::read_dir(&vdir)
        .unwrap()
        .flatten()
        .map(|x| x.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("S_"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    m.resize("64m");
    e.ok(&["send", "-u", "--tarfile"]);
    assert_eq!(e.sessions(VOL)[0]["format"], "tar");
    e.verify_ok(VOL);
    assert_eq!(e.receive_sha(VOL, None, "r.img"), sha256_file(&e.img(VOL)));
}
