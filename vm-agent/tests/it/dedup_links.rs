//! Deduplication on the agent (docs/FORMAT.md §12): hard-link members of a
//! session and `Dedup` operations are carried out only towards regular chunk
//! files of committed sessions (or the session's own earlier members) whose
//! sha256 is the expected one. Everything else fails the session, and
//! nothing outside the archive is touched.

use crate::support::{self, *};
use sha2::{Digest, Sha256};
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{ErrorKind, FrameWriter, RawRequest as Request, Response};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A link member at `addr` pointing at `target` with hash `h` (if any).
fn link(t: Tar, addr: u64, target: &str, h: Option<&[u8; 32]>) -> Tar {
    let mut pax = pax_record("linkpath", target.as_bytes());
    if let Some(h) = h {
        pax.extend(pax_record("SPARSEBAK.sha256", hex(h).as_bytes()));
    }
    let xh = header(b"pax", tar::EntryType::XHeader, pax.len() as u64, |_| {});
    let lh = header(chunk_path(addr).as_bytes(), tar::EntryType::Link, 0, |_| {});
    t.member(&xh, &pax).member(&lh, &[])
}

fn rest(t: Tar) -> Vec<u8> {
    t.file("manifest", b"m\n")
        .file("info.json", b"{}\n")
        .finish()
}

/// `volumes/<vol>/<session>/<chunk path>`
fn loc(vol: &str, session: &str, addr: u64) -> String {
    format!("volumes/{vol}/{session}/{}", chunk_path(addr))
}

fn ino(p: &Path) -> (u64, u64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

fn chunk_file(fx: &Fixture, vol: &str, session: &str, addr: u64) -> PathBuf {
    fx.vol_dir(vol).join(session).join(chunk_path(addr))
}

#[test]
fn links_to_a_committed_chunk_and_to_an_earlier_member() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    let (a1, d1) = (&s1.chunks[1].0, &s1.chunks[1].1);
    let own = vec![7u8; 5000];
    let t = Tar::new().file(&chunk_path(0x20000), &own);
    let t = link(t, 0x30000, &loc(VOL, S1, *a1), Some(&sha(d1)));
    let t = link(t, 0x40000, &loc(VOL, S2, 0x20000), Some(&sha(&own)));
    let mut ag = fx.agent(true);
    let r = ag.put(VOL, S2, Some(S1), rest(t));
    assert_eq!(
        r,
        Response::Stored {
            files: 5,
            bytes: own.len() as u64 + 2 + 3
        }
    );
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S2.into(),
        volume_info: "{}".into(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    ag.bye();
    let f = |s, a| chunk_file(&fx, VOL, s, a);
    assert_eq!(ino(&f(S2, 0x30000)), ino(&f(S1, *a1)));
    assert_eq!(ino(&f(S2, 0x40000)), ino(&f(S2, 0x20000)));
    assert_eq!(std::fs::read(f(S2, 0x30000)).unwrap(), *d1);
}

/// Commit S1, prepare the archive with `plant`, then send S2 of VOL with one
/// good chunk and a link member built by `member`; the session must be
/// refused with `kind` and a message containing `needle`, and nothing but
/// what `plant` made may differ afterwards.
fn refused(
    plant: impl FnOnce(&Fixture, &support::Session),
    member: impl FnOnce(&Fixture, &support::Session) -> (String, Option<[u8; 32]>),
    kind: ErrorKind,
    needle: &str,
) {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    plant(&fx, &s1);
    let (target, h) = member(&fx, &s1);
    let before = fx.snapshot();
    let t = Tar::new().file(&chunk_path(0x20000), &[1u8; 100]);
    let t = link(t, 0x30000, &target, h.as_ref());
    let mut ag = fx.agent(true);
    let r = ag.put(VOL, S2, Some(S1), rest(t));
    let Response::Error {
        kind: k, message, ..
    } = r
    else {
        panic!("link to {target:?} was accepted: {r:?}");
    };
    assert_eq!(k, kind, "{message}");
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    let _ = ag.finish();
    assert!(
        !fx.tmp_dir(VOL, S2).exists(),
        "the -tmp dir was left behind"
    );
    fx.assert_unchanged(&before, &[]);
    let canary = fx.outside.join("canary");
    assert_eq!(std::fs::metadata(&canary).unwrap().nlink(), 1);
}

fn nothing(_: &Fixture, _: &support::Session) {}

fn good_hash(s: &support::Session) -> Option<[u8; 32]> {
    Some(sha(&s.chunks[1].1))
}

#[test]
fn escaping_and_malformed_targets_are_refused() {
    for bad in [
        "../../../../outside/canary".to_string(),
        "/etc/passwd".to_string(),
        format!("volumes/{VOL}/../../../outside/canary"),
        format!("volumes/{VOL}/{S1}/000000000/../../../../../outside/canary"),
        format!("volumes/{VOL}/{S1}/manifest"),
        format!("volumes/{VOL}/{S1}-tmp/{}", chunk_path(0x10000)),
        format!("volumes/{VOL}/{S1}-orphan/{}", chunk_path(0x10000)),
        format!("volumes/{VOL}/.prune-plan/{}", chunk_path(0x10000)),
        format!("{VOL}/{S1}/{}", chunk_path(0x10000)),
    ] {
        refused(
            nothing,
            |_, s| (bad.clone(), good_hash(s)),
            ErrorKind::Invalid,
            "target refused",
        );
    }
}

#[test]
fn another_volumes_tmp_session_is_refused() {
    refused(
        |fx, _| {
            let d = fx.tmp_dir("other", S1).join("000000000");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("x0000000000010000"), b"secret").unwrap();
        },
        |_, _| {
            (
                format!("volumes/other/{S1}-tmp/{}", chunk_path(0x10000)),
                Some(sha(b"secret")),
            )
        },
        ErrorKind::Invalid,
        "target refused",
    );
}

#[test]
fn a_symlink_planted_as_target_is_refused() {
    refused(
        |fx, _| {
            let p = chunk_file(fx, VOL, S1, 0x10000);
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(fx.outside.join("canary"), &p).unwrap();
        },
        |_, _| {
            let canary_hash = None;
            (loc(VOL, S1, 0x10000), canary_hash.or(Some([0u8; 32])))
        },
        ErrorKind::Invalid,
        "symlink",
    );
}

#[test]
fn a_symlinked_volume_dir_is_not_followed() {
    refused(
        |fx, _| {
            std::os::unix::fs::symlink(fx.vol_dir(VOL), fx.vol_dir("evil")).unwrap();
        },
        |_, s| (loc("evil", S1, 0x10000), good_hash(s)),
        ErrorKind::Io,
        "not a directory (or is a symlink)",
    );
}

#[test]
fn a_directory_as_target_is_refused() {
    refused(
        |fx, _| std::fs::create_dir(chunk_file(fx, VOL, S1, 0x50000)).unwrap(),
        |_, _| (loc(VOL, S1, 0x50000), Some([0u8; 32])),
        ErrorKind::Invalid,
        "not a regular file",
    );
}

#[test]
fn a_missing_target_is_refused() {
    refused(
        nothing,
        |_, _| (loc(VOL, S1, 0x70000), Some([0u8; 32])),
        ErrorKind::NotFound,
        "does not exist",
    );
    refused(
        nothing,
        |_, s| (loc(VOL, S0, 0x10000), good_hash(s)),
        ErrorKind::NotFound,
        "does not exist",
    );
}

#[test]
fn a_hash_mismatch_fails_the_session_naming_the_target() {
    refused(
        nothing,
        |_, _| (loc(VOL, S1, 0x10000), Some([0x5a; 32])),
        ErrorKind::Mismatch,
        &format!("{S1}/{} is damaged", chunk_path(0x10000)),
    );
}

/// The error reply also names the damaged file in a typed field, which is
/// what dom0 acts on (it never takes the message apart).
#[test]
fn a_hash_mismatch_names_the_damaged_file_in_the_reply() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let target = loc(VOL, S1, 0x10000);
    let t = Tar::new().file(&chunk_path(0x20000), &[1u8; 100]);
    let t = link(t, 0x30000, &target, Some(&[0x5a; 32]));
    let mut ag = fx.agent(true);
    let r = ag.put(VOL, S2, Some(S1), rest(t));
    let Response::Error {
        kind: ErrorKind::Mismatch,
        damaged: Some(d),
        ..
    } = &r
    else {
        panic!("no damaged file named: {r:?}");
    };
    assert_eq!(d.to_path(), target);
    let _ = ag.finish();
    // A missing target is no damaged file.
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let t = link(
        Tar::new(),
        0x30000,
        &loc(VOL, S0, 0x10000),
        Some(&[0x5a; 32]),
    );
    let mut ag = fx.agent(true);
    let r = ag.put(VOL, S2, Some(S1), rest(t));
    assert!(matches!(r, Response::Error { damaged: None, .. }), "{r:?}");
    let _ = ag.finish();
}

#[test]
fn a_link_without_its_hash_is_refused() {
    refused(
        nothing,
        |_, _| (loc(VOL, S1, 0x10000), None),
        ErrorKind::Invalid,
        "SPARSEBAK.sha256",
    );
}

#[test]
fn check_hardlinks_leaves_nothing_behind() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    assert_eq!(ag.call(&Request::CheckHardlinks), Response::Ok);
    ag.bye();
    fx.assert_unchanged(&before, &[]);
    let hdr = fx.archive_dir().join("archive.json");
    assert_eq!(std::fs::metadata(hdr).unwrap().nlink(), 1);
}

/// Send a `Dedup` stream of `lines`.
fn dedup(fx: &Fixture, lines: &[String]) -> Response {
    let mut ag = fx.agent(true);
    ag.send(&Request::Dedup);
    let w = ag.sock().try_clone().unwrap();
    let data: Vec<u8> = lines.concat().into_bytes();
    let writer = std::thread::spawn(move || {
        let mut fw = FrameWriter::new(w);
        fw.write_all(&data).and_then(|_| fw.finish().map(drop))
    });
    let r = ag.recv().expect("no answer to Dedup");
    let _ = writer.join().unwrap();
    if matches!(r, Response::Error { .. }) {
        // A refused stream ends the agent; wait for it to let the lock go.
        let _ = ag.finish();
    } else {
        ag.bye();
    }
    r
}

#[test]
fn dedup_replaces_duplicates_and_never_uses_a_damaged_kept_copy() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    // S2 holds copies of S1's chunks 0 and 0x10000 at other addresses.
    let mut ag = fx.agent(true);
    let (d0, d1) = (&s1.chunks[0].1, &s1.chunks[1].1);
    let t = Tar::new()
        .file(&chunk_path(0x20000), d0)
        .file(&chunk_path(0x30000), d1);
    assert!(matches!(
        ag.put(VOL, S2, Some(S1), rest(t)),
        Response::Stored { .. }
    ));
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S2.into(),
        volume_info: "{}".into(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    ag.bye();
    // Damage the kept copy of chunk 0x10000 (same length, other bytes).
    let kept1 = chunk_file(&fx, VOL, S1, 0x10000);
    std::fs::write(&kept1, vec![0u8; d1.len()]).unwrap();
    let op = |a: u64, b: u64, d: &[u8]| {
        format!("{} {} {}\n", loc(VOL, S1, a), loc(VOL, S2, b), hex(&sha(d)))
    };
    let ops = [op(0, 0x20000, d0), op(0x10000, 0x30000, d1)];
    let r = dedup(&fx, &ops);
    let Response::Deduped {
        linked,
        already,
        bytes_saved,
        problem_count,
        problems,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!((linked, already, problem_count), (1, 0, 1));
    assert_eq!(bytes_saved, d0.len() as u64);
    assert!(problems[0].contains("is damaged"), "{problems:?}");
    assert!(problems[0].contains("was not replaced"), "{problems:?}");
    let f = |s, a| chunk_file(&fx, VOL, s, a);
    assert_eq!(ino(&f(S1, 0)), ino(&f(S2, 0x20000)));
    assert_ne!(ino(&f(S1, 0x10000)), ino(&f(S2, 0x30000)));
    assert_eq!(
        std::fs::read(f(S2, 0x30000)).unwrap(),
        *d1,
        "the good duplicate survives"
    );
    // No temporary link is left beside the duplicates.
    for d in ["000000000"] {
        for e in std::fs::read_dir(fx.vol_dir(VOL).join(S2).join(d)).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.contains("dedup-tmp"), "{n}");
        }
    }
    // Idempotent: the same operations again change nothing.
    let r = dedup(&fx, &ops[..1]);
    assert!(
        matches!(
            r,
            Response::Deduped {
                linked: 0,
                already: 1,
                bytes_saved: 0,
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn dedup_operations_outside_the_layout_are_refused() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let before = fx.snapshot();
    for bad in [
        format!(
            "{} ../../outside/canary {}\n",
            loc(VOL, S1, 0),
            hex(&[0; 32])
        ),
        format!("/etc/passwd {} {}\n", loc(VOL, S1, 0), hex(&[0; 32])),
        format!(
            "{} {} {}\n",
            loc(VOL, S1, 0),
            loc(VOL, S1, 0),
            hex(&[0; 32])
        ),
        format!("{} {} zz\n", loc(VOL, S1, 0), loc(VOL, S1, 0x10000)),
    ] {
        let r = dedup(&fx, std::slice::from_ref(&bad));
        assert!(
            matches!(
                r,
                Response::Error {
                    kind: ErrorKind::Invalid,
                    ..
                }
            ),
            "{bad:?}: {r:?}"
        );
    }
    fx.assert_unchanged(&before, &[]);
}

/// ext4 allows 65 000 links to one inode: past that, a link member becomes a
/// copy of the target (checked against the same hash).
#[test]
fn a_target_with_too_many_links_is_copied() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    let (a1, d1) = (s1.chunks[1].0, &s1.chunks[1].1);
    let target = chunk_file(&fx, VOL, S1, a1);
    let extra = fx.root.path().join("links");
    std::fs::create_dir(&extra).unwrap();
    let mut n = 0u64;
    loop {
        match std::fs::hard_link(&target, extra.join(n.to_string())) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(nix::libc::EMLINK) => break,
            Err(e) => panic!("cannot make link {n}: {e}"),
        }
        if n > 200_000 {
            eprintln!("*** SKIPPED: this file system has no small link limit ***");
            return;
        }
    }
    let t = link(Tar::new(), 0x30000, &loc(VOL, S1, a1), Some(&sha(d1)));
    let mut ag = fx.agent(true);
    let r = ag.put(VOL, S2, Some(S1), rest(t));
    assert_eq!(
        r,
        Response::Stored {
            files: 3,
            bytes: d1.len() as u64 + 2 + 3
        }
    );
    ag.bye();
    let copy = fx.tmp_dir(VOL, S2).join(chunk_path(0x30000));
    assert_eq!(std::fs::read(&copy).unwrap(), *d1);
    assert_ne!(ino(&copy), ino(&target));
    std::fs::remove_dir_all(&extra).unwrap();
}
