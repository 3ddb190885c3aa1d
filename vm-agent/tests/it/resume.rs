//! Resuming an interrupted send on the agent (docs/FORMAT.md §19): a
//! stream that breaks off leaves its `-tmp` directory; `ResumeCheck`
//! reports what it holds, hashed; a `PutSession` with `resume_from` takes
//! it over, keeps only the files the stream names with their right hash,
//! replaces the others and removes the rest, so the committed session holds
//! exactly what the stream described. Nothing outside the archive is
//! touched, whatever was planted in the old directory.

use crate::support::*;
use sha2::{Digest, Sha256};
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{ErrorKind, FrameWriter, RawRequest as Request, Response};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

fn sha(d: &[u8]) -> [u8; 32] {
    Sha256::digest(d).into()
}

fn hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Chunk `i`'s bytes in a test session (distinct per `seed`).
fn body(i: u64, seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (k as u8).wrapping_mul(13).wrapping_add(i as u8 ^ seed))
        .collect()
}

/// A keep member at `addr`: a link member whose target is its own name.
fn keep(t: Tar, addr: u64, h: &[u8; 32]) -> Tar {
    let name = chunk_path(addr);
    let mut pax = pax_record("linkpath", name.as_bytes());
    pax.extend(pax_record("SPARSEBAK.sha256", hex(h).as_bytes()));
    let xh = header(b"pax", tar::EntryType::XHeader, pax.len() as u64, |_| {});
    let lh = header(name.as_bytes(), tar::EntryType::Link, 0, |_| {});
    t.member(&xh, &pax).member(&lh, &[])
}

fn rest(t: Tar) -> Vec<u8> {
    t.file("manifest", b"m\n")
        .file("info.json", b"{}\n")
        .finish()
}

fn put_req(session: &str, resume_from: Option<&str>, format: Option<&str>) -> Request {
    Request::PutSession {
        vol: VOL.into(),
        session: session.into(),
        expect_last: None,
        volume_uuid: None,
        format: format.map(String::from),
        resume_from: resume_from.map(String::from),
    }
}

/// Addresses of the chunks the broken send carried (two fan-out dirs).
const ADDRS: [u64; 4] = [0, 0x10000, 0x20000, 0x1000_0000];

/// Send `PutSession` for `S1` and a stream carrying `ADDRS`' chunks, then
/// break the link inside the next member, as a killed dom0 or transport
/// would. Returns the chunks sent.
fn broken_send(fx: &Fixture, format: Option<&str>) -> BTreeMap<u64, Vec<u8>> {
    let mut ag = fx.agent(true);
    ag.send(&put_req(S1, None, format));
    let mut t = Tar::new();
    let mut sent = BTreeMap::new();
    for (i, a) in ADDRS.iter().enumerate() {
        let d = body(i as u64, 1, 5000 + i * 100);
        t = t.file(&chunk_path(*a), &d);
        sent.insert(*a, d);
    }
    let mut bytes = t.bytes();
    // Half of one more member: its header and a few bytes of data.
    let h = header(
        chunk_path(0x1001_0000).as_bytes(),
        tar::EntryType::Regular,
        9000,
        |_| {},
    );
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend_from_slice(&[5u8; 700]);
    let mut fw = FrameWriter::new(ag.sock().try_clone().unwrap());
    fw.write_all(&bytes).unwrap();
    fw.flush().unwrap();
    drop(fw); // no closing frame: the link breaks here
    assert!(ag.finish().is_err(), "the agent must see the broken stream");
    sent
}

/// `ResumeCheck` from `after`: the records of one piece, and `more`.
fn check(ag: &mut Agent, session: &str, after: Option<u64>) -> (Vec<(u64, [u8; 32])>, bool) {
    let r = ag.call(&Request::ResumeCheck {
        vol: VOL.into(),
        session: session.into(),
        after,
    });
    let Response::ResumeHeld { count, more } = r else {
        panic!("expected ResumeHeld, got {r:?}");
    };
    let frame = ag.recv_frame().expect("the records' frame");
    assert_eq!(frame.len() as u64, count * 40);
    let recs = frame
        .chunks(40)
        .map(|r| {
            let a = u64::from_be_bytes(r[..8].try_into().unwrap());
            (a, r[8..].try_into().unwrap())
        })
        .collect();
    (recs, more)
}

fn tmp_chunk(fx: &Fixture, session: &str, addr: u64) -> PathBuf {
    fx.tmp_dir(VOL, session).join(chunk_path(addr))
}

#[test]
fn a_broken_stream_leaves_its_files_and_resume_check_reports_them_hashed() {
    let fx = Fixture::new();
    let sent = broken_send(&fx, None);
    for (a, d) in &sent {
        assert_eq!(&fs::read(tmp_chunk(&fx, S1, *a)).unwrap(), d);
    }
    // The member cut short is not written at all: a chunk member is read
    // whole before its file is created.
    let partial = tmp_chunk(&fx, S1, 0x1001_0000);
    assert!(!partial.exists());
    // A power loss can still leave a file partly written: the agent reports
    // it by the hash of what it holds, which cannot match.
    fs::write(&partial, vec![5u8; 700]).unwrap();
    // Junk the agent must not report: a name that is no chunk, a chunk
    // name off the chunk grid, a symlink, a directory, an oversized file.
    let d0 = fx.tmp_dir(VOL, S1).join("000000000");
    fs::write(d0.join("junk"), b"x").unwrap();
    fs::write(d0.join("x0000000000000007"), b"x").unwrap();
    std::os::unix::fs::symlink(fx.outside.join("canary"), d0.join("x0000000000030000")).unwrap();
    fs::create_dir(d0.join("x0000000000040000")).unwrap();
    fs::write(d0.join("x0000000000050000"), vec![0u8; 80000]).unwrap();

    let mut ag = fx.agent(true);
    let (recs, more) = check(&mut ag, S1, None);
    assert!(!more);
    let mut want: Vec<(u64, [u8; 32])> = sent.iter().map(|(a, d)| (*a, sha(d))).collect();
    want.push((0x1001_0000, sha(&[5u8; 700])));
    assert_eq!(recs, want);
    // From an address on: only what lies after it.
    let (after, _) = check(&mut ag, S1, Some(0x10000));
    assert_eq!(after, want[2..].to_vec());
    let (none, more) = check(&mut ag, S1, Some(0x1001_0000));
    assert!(none.is_empty() && !more);
    // No such unfinished session.
    let r = ag.call(&Request::ResumeCheck {
        vol: VOL.into(),
        session: S2.into(),
        after: None,
    });
    assert_names(
        &expect_error(r, ErrorKind::NotFound),
        &format!("no unfinished session {S2} of volume {VOL}"),
    );
    ag.bye();
    assert!(fx.outside.join("canary").exists());
}

#[test]
fn a_broken_tar_session_stream_leaves_nothing() {
    let fx = Fixture::new();
    broken_send(&fx, Some("tar"));
    assert!(!fx.tmp_dir(VOL, S1).exists());
}

#[test]
fn a_resumed_session_keeps_checked_files_replaces_changed_ones_and_drops_the_rest() {
    let fx = Fixture::new();
    let sent = broken_send(&fx, None);
    // An old manifest and a stray fan-out dir must go as well.
    fs::write(fx.tmp_dir(VOL, S1).join("manifest"), b"old").unwrap();
    fs::create_dir(fx.tmp_dir(VOL, S1).join("000000005")).unwrap();
    fs::write(
        fx.tmp_dir(VOL, S1).join("000000005/x0000000050000000"),
        b"stale",
    )
    .unwrap();
    let before = fx.snapshot();
    // Kept: 0 and 0x1000_0000. Replaced: 0x10000 (new bytes). Dropped:
    // 0x20000 (now a zero chunk, say) and the partial 0x1001_0000. New:
    // 0x1002_0000.
    let new_10000 = body(9, 9, 6000);
    let new_late = body(8, 8, 3000);
    let t = keep(Tar::new(), 0, &sha(&sent[&0]));
    let t = t.file(&chunk_path(0x10000), &new_10000);
    let t = keep(t, 0x1000_0000, &sha(&sent[&0x1000_0000]));
    let t = t.file(&chunk_path(0x1002_0000), &new_late);
    let mut ag = fx.agent(true);
    let r = ag.put_request(put_req(S2, Some(S1), None), rest(t));
    assert_eq!(
        r,
        Response::Stored {
            files: 6,
            bytes: (new_10000.len() + new_late.len() + 2 + 3) as u64
        }
    );
    assert!(
        !fx.tmp_dir(VOL, S1).exists(),
        "the old directory was taken over"
    );
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S2.into(),
        volume_info: "{}".into(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    ag.bye();
    let s2 = fx.vol_dir(VOL).join(S2);
    let mut files: Vec<String> = sparsebak_testing::tree::walk(&s2, |_| false)
        .into_iter()
        .filter(|e| !matches!(e.kind, sparsebak_testing::tree::Kind::Dir))
        .map(|e| e.rel.display().to_string())
        .collect();
    files.sort();
    let mut want = vec![
        chunk_path(0),
        chunk_path(0x10000),
        chunk_path(0x1000_0000),
        chunk_path(0x1002_0000),
        "info.json".to_string(),
        "manifest".to_string(),
    ];
    want.sort();
    assert_eq!(files, want);
    assert_eq!(fs::read(s2.join(chunk_path(0))).unwrap(), sent[&0]);
    assert_eq!(fs::read(s2.join(chunk_path(0x10000))).unwrap(), new_10000);
    assert_eq!(
        fs::read(s2.join(chunk_path(0x1002_0000))).unwrap(),
        new_late
    );
    assert_eq!(fs::read(s2.join("manifest")).unwrap(), b"m\n");
    // Outside the volume dir nothing changed.
    let after = fx.snapshot();
    for (p, d) in &before.0 {
        if !p.starts_with("dest/sparsebak/volumes") {
            assert_eq!(after.0.get(p), Some(d), "{} changed", p.display());
        }
    }
}

#[test]
fn a_keep_member_whose_file_changed_fails_the_session() {
    let fx = Fixture::new();
    let sent = broken_send(&fx, None);
    fs::write(tmp_chunk(&fx, S1, 0x10000), b"altered on the destination").unwrap();
    let t = keep(Tar::new(), 0, &sha(&sent[&0]));
    let t = keep(t, 0x10000, &sha(&sent[&0x10000]));
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put_request(put_req(S2, Some(S1), None), rest(t)),
        ErrorKind::Mismatch,
    );
    assert_names(&msg, &format!("storing {S2} of {VOL}"));
    assert_names(&msg, "kept from the unfinished session");
    assert_names(&msg, "is damaged: its stored digest is");
    assert!(ag.finish().is_err());
    assert!(!fx.tmp_dir(VOL, S2).exists() && !fx.tmp_dir(VOL, S1).exists());
}

#[test]
fn keep_members_are_refused_outside_a_resumed_session_and_when_missing() {
    let fx = Fixture::new();
    let sent = broken_send(&fx, None);
    // Without resume_from: the old directory is removed, and keep is refused.
    let mut ag = fx.agent(true);
    let t = keep(Tar::new(), 0, &sha(&sent[&0]));
    let msg = expect_error(
        ag.put_request(put_req(S2, None, None), rest(t)),
        ErrorKind::Invalid,
    );
    assert_names(&msg, "keeps a file, but this session resumes none");
    assert!(ag.finish().is_err());
    assert!(!fx.tmp_dir(VOL, S1).exists());
    // resume_from a session that left nothing: a fresh session, where a
    // keep member finds nothing.
    let mut ag = fx.agent(true);
    let t = keep(Tar::new(), 0, &sha(&sent[&0]));
    let msg = expect_error(
        ag.put_request(put_req(S2, Some(S1), None), rest(t)),
        ErrorKind::NotFound,
    );
    assert_names(&msg, "does not exist");
    assert!(ag.finish().is_err());
    // A tar session never resumes.
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put_request(put_req(S2, Some(S1), Some("tar")), rest(Tar::new())),
        ErrorKind::Invalid,
    );
    assert_names(&msg, "a tar session cannot resume an unfinished one");
    assert!(ag.finish().is_err());
}

#[test]
fn planted_symlinks_in_the_old_directory_are_never_followed() {
    let fx = Fixture::new();
    let sent = broken_send(&fx, None);
    let outside = fx.outside.clone();
    fs::create_dir(outside.join("fan")).unwrap();
    fs::write(outside.join("fan/x0000000010000000"), &sent[&0x1000_0000]).unwrap();
    let before = Tree::of(&outside);
    // The second fan-out dir becomes a symlink out of the archive, and a
    // chunk file a symlink to the canary (with the canary's bytes).
    let tmp = fx.tmp_dir(VOL, S1);
    fs::remove_dir_all(tmp.join("000000001")).unwrap();
    std::os::unix::fs::symlink(outside.join("fan"), tmp.join("000000001")).unwrap();
    fs::remove_file(tmp_chunk(&fx, S1, 0)).unwrap();
    std::os::unix::fs::symlink(outside.join("canary"), tmp_chunk(&fx, S1, 0)).unwrap();
    // ResumeCheck reports neither.
    let mut ag = fx.agent(true);
    let (recs, _) = check(&mut ag, S1, None);
    let addrs: Vec<u64> = recs.iter().map(|r| r.0).collect();
    assert_eq!(addrs, vec![0x10000, 0x20000]);
    // A keep through the symlinked fan-out dir is refused.
    let t = keep(Tar::new(), 0x1000_0000, &sha(&sent[&0x1000_0000]));
    let msg = expect_error(
        ag.put_request(put_req(S2, Some(S1), None), rest(t)),
        ErrorKind::NotFound,
    );
    assert_names(&msg, "does not exist");
    assert!(ag.finish().is_err());
    assert_eq!(Tree::of(&outside), before);
    assert!(fx.outside.join("canary").exists());

    // Writing new data over both: the symlinks are replaced, not followed.
    broken_send(&fx, None);
    let tmp = fx.tmp_dir(VOL, S1);
    fs::remove_dir_all(tmp.join("000000001")).unwrap();
    std::os::unix::fs::symlink(outside.join("fan"), tmp.join("000000001")).unwrap();
    fs::remove_file(tmp_chunk(&fx, S1, 0)).unwrap();
    std::os::unix::fs::symlink(outside.join("canary"), tmp_chunk(&fx, S1, 0)).unwrap();
    let t = Tar::new()
        .file(&chunk_path(0), b"new zero")
        .file(&chunk_path(0x1000_0000), b"new far");
    let mut ag = fx.agent(true);
    let r = ag.put_request(put_req(S2, Some(S1), None), rest(t));
    assert!(matches!(r, Response::Stored { files: 4, .. }), "{r:?}");
    ag.bye();
    assert_eq!(Tree::of(&outside), before);
    assert_eq!(fs::read(tmp_chunk(&fx, S2, 0)).unwrap(), b"new zero");
    assert!(fs::symlink_metadata(fx.tmp_dir(VOL, S2).join("000000001"))
        .unwrap()
        .is_dir());
    assert_eq!(
        fs::read(tmp_chunk(&fx, S2, 0x1000_0000)).unwrap(),
        b"new far"
    );
}
