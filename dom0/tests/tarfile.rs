//! `send --tarfile`: sessions stored on the destination as one tar file
//! (docs/FORMAT.md §13), mixed with folder sessions. Every session restores
//! to the sha256 of the image it was sent from, verify passes, damage is
//! reported by chunk, and prune works with tar sessions on either side of
//! the merge, including after a crash at any step.

mod common;
mod prune_support;

use common::*;
use prune_support::*;
use std::path::{Path, PathBuf};

const T: bool = true;
const F: bool = false;

fn sdir(h: &Hist, s: &str) -> PathBuf {
    h.e.vol_archive_dir(VOL).join(format!("S_{s}"))
}

fn prune(h: &Hist, args: &[&str]) -> Out {
    let mut a = vec!["prune", VOL, "-u"];
    a.extend_from_slice(args);
    h.e.run(&a)
}

/// Names of the fan-out dirs directly in a session dir.
fn fan_dirs(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 9 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

fn tar_list(p: &Path) -> Vec<String> {
    let out = sh_ok("tar", &["-tf", &p.to_string_lossy()]);
    out.lines().map(str::to_string).collect()
}

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

/// Prune `sel` (indices into the current chain) with `args`; every session
/// left restores exactly as before and verify passes.
fn prune_ok(h: &Hist, args: &[&str], sel: std::ops::RangeInclusive<usize>) -> Vec<String> {
    let names = h.names();
    let out = prune(h, args);
    assert_eq!(out.code, 0, "{args:?}: {out:#?}");
    let left = h.without(&names, sel);
    h.check(&left);
    left
}

fn range(names: &[String], a: usize, b: usize) -> String {
    format!("--session={},{}", names[a], names[b])
}

#[test]
fn prune_tar_sessions_into_a_folder_target() {
    let h = Hist::with_tar(&standard_steps(), &[T, T, F, T, T, F]);
    let n = h.names();
    h.check(&n);
    let files = h.e.chunk_files(VOL, &n[2]);
    prune_ok(&h, &[&range(&n, 0, 1)], 0..=1);
    // The folder target inherited the tar parts that still hold winners,
    // renamed whole; no chunk was unpacked into a file.
    assert_eq!(h.e.chunk_files(VOL, &n[2]), files);
    let parts = sdir(&h, &n[2]).join("parts");
    assert!(parts.join(format!("S_{}.tar", n[0])).is_file());
    assert!(parts.join(format!("S_{}.tar", n[1])).is_file());
    assert!(parts.join(format!("S_{}.idx", n[1])).is_file());
    // Tar sessions 3 and 4 into folder 5: 3 holds the shrink, 4 the regrowth.
    prune_ok(&h, &[&range(&n, 3, 4)], 1..=2);
    // And that folder session, with inherited parts, into the newest.
    let left = h.names();
    prune_ok(&h, &[&format!("--session={}", left[0])], 0..=0);
}

#[test]
fn prune_folder_sessions_into_a_tar_target() {
    let h = Hist::with_tar(&standard_steps(), &[F, F, T, F, F, T]);
    let n = h.names();
    prune_ok(&h, &[&range(&n, 0, 1)], 0..=1);
    // Winning folder chunk files moved into the tar session as files.
    assert!(!h.e.chunk_files(VOL, &n[2]).is_empty());
    assert!(sdir(&h, &n[2]).join("chunks.tar").is_file());
    prune_ok(&h, &["--all-before", &format!("--session={}", n[4])], 0..=1);
    assert_eq!(h.names(), vec![n[4].clone(), n[5].clone()]);
}

#[test]
fn prune_tar_into_tar_ranges_and_all_before() {
    let h = Hist::with_tar(&standard_steps(), &[T, T, T, T, T, T]);
    let n = h.names();
    // 1,2 into 3; then 0 into 3 (which holds parts of 1 and 2); then
    // 3 (holding parts) into 4, and 4 into 5: parts of parts.
    prune_ok(&h, &[&range(&n, 1, 2)], 1..=2);
    prune_ok(&h, &[&format!("--session={}", n[0])], 0..=0);
    let t = sdir(&h, &n[3]);
    assert!(t.join("chunks.tar").is_file());
    prune_ok(&h, &["--all-before", &format!("--session={}", n[4])], 0..=0);
    prune_ok(&h, &[&format!("--session={}", n[4])], 0..=0);
    assert_eq!(h.names(), vec![n[5].clone()]);
    // All tar: nothing was unpacked into chunk files, only whole parts
    // moved, each with its index. Session 0's full backup still supplies
    // most chunks, so its part is kept.
    assert!(fan_dirs(&sdir(&h, &n[5])).is_empty());
    let kept: Vec<String> = std::fs::read_dir(sdir(&h, &n[5]).join("parts"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept.contains(&format!("S_{}.tar", n[0])), "{kept:?}");
    for k in &kept {
        let pair = match k.strip_suffix(".tar") {
            Some(o) => format!("{o}.idx"),
            None => k.replace(".idx", ".tar"),
        };
        assert!(kept.contains(&pair), "{k} without {pair}: {kept:?}");
    }
}

#[test]
fn prune_mixed_chain_keep_last() {
    let h = Hist::with_tar(&standard_steps(), &[T, F, T, F, T, F]);
    let n = h.names();
    prune_ok(&h, &["--keep-last=2"], 0..=3);
    assert_eq!(h.names(), vec![n[4].clone(), n[5].clone()]);
    prune_ok(&h, &["--keep-last=1"], 0..=0);
}

/// A part none of whose entries wins is removed with its session: a full
/// tar session overwritten completely by the next one.
#[test]
fn prune_drops_a_part_with_no_winning_entry() {
    let steps: Vec<Step> = vec![
        |p| write_file(p, &random_bytes(6 * CHUNK, 11)),
        |p| write_file(p, &random_bytes(6 * CHUNK, 12)),
        |p| write_at(p, 7, b"edit"),
    ];
    let h = Hist::with_tar(&steps, &[T, T, T]);
    let n = h.names();
    prune_ok(&h, &[&format!("--session={}", n[0])], 0..=0);
    assert!(!sdir(&h, &n[1]).join("parts").exists());
    // The second session's part does win (5 of its 6 chunks): kept.
    prune_ok(&h, &[&format!("--session={}", n[1])], 0..=0);
    let parts = sdir(&h, &n[2]).join("parts");
    assert!(parts.join(format!("S_{}.tar", n[1])).is_file());
}

const AGENT_AT: &str = "SPARSEBAK_AGENT_CRASH_AT";
const AGENT_RENAMES: &str = "SPARSEBAK_AGENT_CRASH_AFTER_RENAMES";
const DOM0_AT: &str = "SPARSEBAK_TEST_CRASH_AT";

/// Prune two sessions into tar session 2 with `hook` set: plain, a tar
/// session and a folder session whose winners are files; `nested`, first
/// session 0 into tar session 1 (which inherits a part), then 1 and folder
/// session 2 into 3, moving an inherited part out of `S_1/parts/`.
/// `Some(())` if the prune died: then a verify completed it and every
/// session left restores as before. `None` if the hook never fired.
fn crash_then_complete(hook: (&str, &str), nested: bool) -> Option<()> {
    let h = Hist::with_tar(&standard_steps()[..4], &[T, T, F, T]);
    let mut names = h.names();
    if nested {
        prune_ok(&h, &[&format!("--session={}", names[0])], 0..=0);
        assert!(sdir(&h, &names[1]).join("parts").is_dir());
        names.remove(0);
    }
    let out = run_env(&h.e, &["prune", VOL, "-u", &range(&names, 0, 1)], &[hook]);
    if out.code == 0 {
        h.check(&names[2..]);
        return None;
    }
    assert!(
        h.e.meta.join("volumes").join(VOL).join(".prune").is_dir(),
        "{hook:?}: no journal: {out:#?}"
    );
    let out = h.e.run(&["verify", VOL]);
    assert_eq!(out.code, 0, "{hook:?} then verify: {out:#?}");
    assert!(
        out.stderr.contains("Completing an interrupted prune"),
        "{hook:?}: {}",
        out.stderr
    );
    h.check(&names[2..]);
    assert!(sdir(&h, &names[2])
        .join("parts")
        .join(format!("S_{}.tar", names[0]))
        .is_file());
    Some(())
}

#[test]
fn prune_with_parts_killed_after_every_rename() {
    for nested in [false, true] {
        let mut n = 0;
        while crash_then_complete((AGENT_RENAMES, &n.to_string()), nested).is_some() {
            n += 1;
            assert!(n < 64, "the prune never finished");
        }
        // Folder files of the folder session and both files of each part.
        assert!(n >= 3, "only {n} renames");
    }
}

#[test]
fn prune_with_parts_killed_at_each_step() {
    for hook in [
        (AGENT_AT, "plan"),
        (AGENT_AT, "target"),
        (AGENT_AT, "removed"),
        (DOM0_AT, "journal"),
        (DOM0_AT, "agent-done"),
        (DOM0_AT, "local-target"),
    ] {
        for nested in [false, true] {
            assert!(
                crash_then_complete(hook, nested).is_some(),
                "{hook:?} did not fire"
            );
        }
    }
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
fn prune_does_not_move_a_symlink_planted_as_a_part() {
    let h = Hist::with_tar(&standard_steps()[..3], &[T, T, F]);
    let n = h.names();
    let real = sdir(&h, &n[0]).join("chunks.tar");
    let outside = h.e.path("outside.tar");
    std::fs::rename(&real, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &real).unwrap();
    let before = std::fs::read(&outside).unwrap();
    prune(&h, &[&format!("--session={}", n[0])]).expect(
        1,
        &["chunks.tar) is not a regular file; refusing to move it"],
    );
    assert_eq!(std::fs::read(&outside).unwrap(), before);
    assert!(std::fs::symlink_metadata(&real).unwrap().is_symlink());
    assert!(!sdir(&h, &n[1])
        .join("parts")
        .join(format!("S_{}.tar", n[0]))
        .exists());
}

#[test]
fn tarfile_is_a_send_option_only() {
    let e = Env::new();
    e.init(&[]);
    e.run(&["list", "--tarfile"])
        .expect(1, &["--tarfile is only accepted by send"]);
}

/// Kept parts hold data past a shrink that later sessions regrow over
/// (FORMAT.md §13.4): the growth entries, zeros or data, are what every
/// session restores, never the older bytes still inside the parts.
#[test]
fn stale_data_past_a_shrink_in_kept_parts_is_never_served() {
    let steps: Vec<Step> = vec![
        |p| write_file(p, &random_bytes(16 * CHUNK, 21)),
        |p| {
            write_at(p, CHUNK, &random_bytes(CHUNK, 22));
            write_at(p, 12 * CHUNK, &random_bytes(2 * CHUNK, 23));
        },
        |p| set_len(p, 4 * CHUNK + 100),
        |p| {
            set_len(p, 16 * CHUNK);
            write_at(p, 13 * CHUNK + 5, &random_bytes(1000, 24));
        },
        |p| write_at(p, 3, b"x"),
    ];
    let h = Hist::with_tar(&steps, &[T, T, T, T, T]);
    let n = h.names();
    h.check(&n);
    prune_ok(&h, &[&range(&n, 0, 2)], 0..=2);
    let parts = sdir(&h, &n[3]).join("parts");
    assert!(parts.join(format!("S_{}.tar", n[0])).is_file());
    assert!(parts.join(format!("S_{}.tar", n[1])).is_file());
    prune_ok(&h, &[&format!("--session={}", n[3])], 0..=0);
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
    e.ok(&["arch-init", &d, "--subdir=archive", &src]);
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
