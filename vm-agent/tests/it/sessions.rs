//! Sessions end to end through `serve`: the happy path read back byte for
//! byte, the archive lock, rollback and orphan handling, and a peer that
//! sends garbage instead of protocol.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    write_frame, ErrorKind, RawRequest as Request, Response, FILE_DATA, FILE_MISSING, MAX_FRAME,
    MAX_MESSAGE, PROTOCOL_VERSION,
};
use std::fs;
use std::io::Write;

fn sessions(ag: &mut Agent) -> Response {
    ag.call(&Request::ListSessions { vol: VOL.into() })
}

fn committed(names: &[&str]) -> Response {
    Response::Sessions {
        committed: names
            .iter()
            .map(|s| sparsebak_common::names::SessionName::new(s).unwrap())
            .collect(),
        in_progress: vec![],
    }
}

/// Read every file of `s` back through `ReadFiles` and compare bytes.
fn read_back(ag: &mut Agent, name: &str, s: &Session) {
    ag.start_read(VOL);
    let mut want: Vec<(String, &[u8])> = s
        .chunks
        .iter()
        .map(|(a, d)| (format!("{name}/{}", chunk_path(*a)), &d[..]))
        .collect();
    want.push((format!("{name}/manifest"), &s.manifest));
    want.push((format!("{name}/info.json"), &s.info));
    for (path, data) in want {
        let reply = ag.read_one(path.as_bytes());
        assert_eq!(reply[0], FILE_DATA, "{path}");
        assert!(&reply[1..] == data, "{path} differs");
    }
    assert_eq!(ag.end_read(), Response::Ok);
}

#[test]
fn happy_path_store_commit_read_back() {
    let fx = Fixture::new();
    let mut ag = fx.agent(true);
    let s1 = Session::sample(S1);
    let stored = ag.put(VOL, S1, None, s1.tar());
    assert_eq!(
        stored,
        Response::Stored {
            files: 5,
            bytes: s1.bytes()
        }
    );
    assert_eq!(
        sessions(&mut ag),
        Response::Sessions {
            committed: vec![],
            in_progress: vec![format!("{S1}-tmp")]
        }
    );
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S1.into(),
        volume_info: s1.volume_info.clone(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    // Committing twice fails: the -tmp dir is gone.
    let msg = expect_error(ag.call(&commit), ErrorKind::NotFound);
    assert_names(&msg, &format!("cannot commit {S1} of {VOL}"));

    let s2 = Session::sample(S2);
    assert!(matches!(
        ag.put(VOL, S2, Some(S1), s2.tar()),
        Response::Stored { .. }
    ));
    let commit2 = Request::Commit {
        vol: VOL.into(),
        session: S2.into(),
        volume_info: s2.volume_info.clone(),
    };
    assert_eq!(ag.call(&commit2), Response::Ok);
    assert_eq!(sessions(&mut ag), committed(&[S1, S2]));
    assert_eq!(
        ag.call(&Request::ListVolumes),
        Response::Volumes {
            names: vec![sparsebak_common::names::VolName::new(VOL).unwrap()],
            ignored: vec![]
        }
    );
    read_back(&mut ag, S1, &s1);
    read_back(&mut ag, S2, &s2);
    assert_eq!(
        fs::read_to_string(fx.vol_dir(VOL).join("volume.json")).unwrap(),
        s2.volume_info
    );
    ag.bye();

    // A read-only agent sees the same, and cannot write.
    let mut ro = fx.agent(false);
    read_back(&mut ro, S2, &s2);
    let msg = expect_error(
        ro.call(&Request::DeleteVolume { vol: VOL.into() }),
        ErrorKind::Invalid,
    );
    assert_eq!(msg, "archive was opened read-only");
    ro.bye();

    let mut ag = fx.agent(true);
    assert_eq!(
        ag.call(&Request::DeleteVolume { vol: VOL.into() }),
        Response::Ok
    );
    assert_eq!(sessions(&mut ag), committed(&[]));
    ag.bye();
    assert!(!fx.vol_dir(VOL).exists());
}

#[test]
fn second_writer_is_locked_out() {
    let fx = Fixture::new();
    let first = fx.agent(true);
    let mut second = Agent::start();
    let msg = expect_error(
        second.open(&fx.dest_str(), &fx.mp_str(), true),
        ErrorKind::Locked,
    );
    assert_names(
        &msg,
        &format!(
            "archive {} is locked by another sparsebak process",
            fx.archive_dir().display()
        ),
    );
    // Readers are not locked out.
    assert!(matches!(
        second.open(&fx.dest_str(), &fx.mp_str(), false),
        Response::Opened {
            header: Some(_),
            ..
        }
    ));
    second.bye();
    first.bye();
    // Once the first writer is gone, the lock is free.
    fx.agent(true).bye();
}

#[test]
fn init_over_an_existing_archive_is_refused() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.call(&Request::InitArchive {
            header: header_json(),
        }),
        ErrorKind::Exists,
    );
    assert_eq!(
        msg,
        format!(
            "an archive already exists at {}",
            fx.archive_dir().display()
        )
    );
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn expect_last_missing_from_the_archive_is_a_mismatch() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put(VOL, S3, Some(S2), Session::sample(S3).tar()),
        ErrorKind::Mismatch,
    );
    assert_names(
        &msg,
        &format!("session {S2} of volume {VOL} is missing from the archive"),
    );
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn no_expect_last_while_sessions_exist_is_a_mismatch() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put(VOL, S2, None, Session::sample(S2).tar()),
        ErrorKind::Mismatch,
    );
    assert_names(&msg, &format!("already holds 1 session(s) of volume {VOL}"));
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[]);
}

/// A first send that died between the agent's commit and dom0's: the same
/// volume (same uuid in volume.json) may set the session aside and go on;
/// another uuid may not.
#[test]
fn orphaned_first_session_of_the_same_volume_is_set_aside() {
    let fx = Fixture::new();
    let s1 = Session::sample(S1);
    let mut ag = fx.agent(true);
    assert!(matches!(
        ag.put(VOL, S1, None, s1.tar()),
        Response::Stored { .. }
    ));
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S1.into(),
        volume_info: r#"{"name":"vol","uuid":"u-1","last":"S_x"}"#.into(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    ag.bye();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put_as(VOL, S2, None, Some("u-2"), Session::sample(S2).tar()),
        ErrorKind::Mismatch,
    );
    assert_names(&msg, "already holds 1 session(s)");
    let _ = ag.finish();
    let mut ag = fx.agent(true);
    let s2 = Session::sample(S2);
    assert!(matches!(
        ag.put_as(VOL, S2, None, Some("u-1"), s2.tar()),
        Response::Stored { .. }
    ));
    ag.bye();
    assert!(fx.vol_dir(VOL).join(format!("{S1}-orphan")).is_dir());
    assert!(!fx.vol_dir(VOL).join(S1).exists());
}

#[test]
fn session_not_newer_than_the_last_is_refused() {
    let fx = Fixture::new();
    fx.commit_session(S2, None);
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put(VOL, S1, Some(S2), Session::sample(S1).tar()),
        ErrorKind::Invalid,
    );
    assert_eq!(
        msg,
        format!("session {S1} of {VOL} is not newer than the archive's last session")
    );
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[]);
}

/// S2 was committed on the archive but dom0 never recorded it (it died
/// between the two commits): it is kept as `S2-orphan`, not deleted, and S3
/// follows S1.
#[test]
fn newer_committed_session_is_set_aside_as_orphan() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    fx.commit_session(S2, Some(S1));
    let s2_tree = Tree::of(&fx.vol_dir(VOL).join(S2));
    let s3 = fx.commit_session(S3, Some(S1));

    let orphan = fx.vol_dir(VOL).join(format!("{S2}-orphan"));
    assert_eq!(Tree::of(&orphan), s2_tree, "the orphan was altered");
    assert!(!fx.vol_dir(VOL).join(S2).exists());
    let mut ag = fx.agent(false);
    assert_eq!(sessions(&mut ag), committed(&[S1, S3]));
    read_back(&mut ag, S1, &s1);
    read_back(&mut ag, S3, &s3);
    // Orphans are not served as sessions.
    ag.start_read(VOL);
    let reply = ag.read_one(format!("{S2}/manifest").as_bytes());
    assert_eq!(reply, vec![FILE_MISSING]);
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn stale_tmp_dirs_are_removed_by_the_next_put() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let vdir = fx.vol_dir(VOL);
    let stale = fx.tmp_dir(VOL, S0);
    fs::create_dir_all(stale.join("000000000")).unwrap();
    fs::write(stale.join("000000000/x0000000000000000"), b"half").unwrap();
    // A stale -tmp that is a symlink: removing it must not follow it.
    let linked = fx.tmp_dir(VOL, S2);
    std::os::unix::fs::symlink(&fx.outside, &linked).unwrap();
    // Not ours: a name that only looks like a session is left alone.
    fs::create_dir(vdir.join("S_notasession-tmp")).unwrap();
    let outside = Tree::of(&fx.outside);

    let mut ag = fx.agent(true);
    assert_eq!(
        sessions(&mut ag),
        Response::Sessions {
            committed: vec![sparsebak_common::names::SessionName::new(S1).unwrap()],
            in_progress: vec![format!("{S0}-tmp"), format!("{S2}-tmp")]
        }
    );
    let s3 = Session::sample(S3);
    assert!(matches!(
        ag.put(VOL, S3, Some(S1), s3.tar()),
        Response::Stored { .. }
    ));
    assert!(!stale.exists());
    assert!(fs::symlink_metadata(&linked).is_err());
    assert!(vdir.join("S_notasession-tmp").is_dir());
    assert_eq!(
        Tree::of(&fx.outside),
        outside,
        "a stale-tmp symlink was followed"
    );
    assert_eq!(
        sessions(&mut ag),
        Response::Sessions {
            committed: vec![sparsebak_common::names::SessionName::new(S1).unwrap()],
            in_progress: vec![format!("{S3}-tmp")]
        }
    );
    ag.bye();
}

#[test]
fn requests_before_open_are_refused_softly() {
    let mut ag = Agent::start();
    for req in [
        Request::ListVolumes,
        Request::ListSessions { vol: VOL.into() },
        Request::DeleteVolume { vol: VOL.into() },
        Request::InitArchive {
            header: header_json(),
        },
    ] {
        assert_eq!(
            expect_error(ag.call(&req), ErrorKind::Invalid),
            "no archive is open"
        );
    }
    ag.bye();
}

#[test]
fn wrong_protocol_version_ends_the_session() {
    let mut ag = Agent::start_silent();
    let resp = ag.call(&Request::Hello {
        protocol: PROTOCOL_VERSION + 1,
    });
    let msg = expect_error(resp, ErrorKind::Invalid);
    assert_names(
        &msg,
        &format!("protocol version {} is not supported", PROTOCOL_VERSION + 1),
    );
    assert_eq!(ag.finish(), Err(msg));
}

/// Bytes that are not a request end the session with an error; the agent
/// neither panics nor waits for more. Returns the agent's error.
fn garbage(bytes: &[u8]) -> String {
    garbage_then(bytes, false)
}

/// As [`garbage`]; with `close`, our side of the pipe is closed after the
/// bytes (a truncated frame is only an error once no more can come).
fn garbage_then(bytes: &[u8], close: bool) -> String {
    let mut ag = Agent::start();
    ag.sock().write_all(bytes).unwrap();
    if close {
        ag.sock().shutdown(std::net::Shutdown::Write).unwrap();
    }
    assert_eq!(ag.recv(), None, "the agent answered garbage");
    ag.finish().unwrap_err()
}

#[test]
fn oversized_frame_length_is_an_error() {
    let len = (MAX_MESSAGE as u32 + 1).to_be_bytes();
    let e = garbage(&len);
    assert_names(
        &e,
        &format!(
            "frame of {} bytes exceeds the limit of {MAX_MESSAGE}",
            MAX_MESSAGE + 1
        ),
    );
    let e = garbage(&u32::MAX.to_be_bytes());
    assert_names(&e, "exceeds the limit");
}

#[test]
fn malformed_json_is_an_error() {
    let cases: [&[u8]; 5] = [
        b"{not json",
        br#"{"op":"format_disk","path":"/"}"#,
        br#"{"op":"open","dest_path":1}"#,
        b"\xff\xfe",
        b"",
    ];
    for body in cases {
        let mut frame = Vec::new();
        write_frame(&mut frame, body).unwrap();
        let e = garbage(&frame);
        assert_names(&e, "malformed message");
    }
}

#[test]
fn frame_cut_short_is_an_error() {
    let e = garbage_then(&[0, 0], true);
    assert_names(&e, "pipe closed inside a frame length");
    let e = garbage_then(&[0, 0, 0, 50, b'{'], true);
    assert_names(&e, "pipe closed inside a frame of 50 bytes");
}

#[test]
fn oversized_frame_inside_a_data_stream_is_an_error() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    ag.send(&Request::PutSession {
        vol: VOL.into(),
        session: S1.into(),
        expect_last: None,
        volume_uuid: None,
        format: None,
        resume_from: None,
    });
    ag.sock()
        .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
        .unwrap();
    let msg = expect_error(ag.recv().unwrap(), ErrorKind::Io);
    assert_names(&msg, &format!("storing {S1} of {VOL}"));
    assert_names(
        &msg,
        &format!("frame of {} bytes exceeds the limit", MAX_FRAME + 1),
    );
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[fx.vol_dir(VOL)]);
}
