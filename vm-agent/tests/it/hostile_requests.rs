//! Hostile requests other than tar streams: names that are not volume or
//! session names, `ReadFiles` paths outside the layout or leading to things
//! that are not regular files, and `Open` paths that are not where they say.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    ErrorKind, RawRequest as Request, Response, FILE_DATA, FILE_MISSING, FILE_REFUSED, MAX_FRAME,
};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

const BAD_VOLS: &[&str] = &["..", ".", "a/b", "S_../x", "", "../vol1", "vol1/..", "-rf"];
const BAD_SESSIONS: &[&str] = &[
    "..",
    "a/b",
    "S_../x",
    "",
    "S_20260101-000000-tmp",
    "S_20260101-000000/..",
    "S_20260101-000000/../../x",
    "20260101-000000",
];

/// The agent's messages quote names with `{:?}`.
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

#[test]
fn invalid_names_in_soft_requests() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    for &vol in BAD_VOLS {
        for req in [
            Request::ListSessions { vol: vol.into() },
            Request::DeleteVolume { vol: vol.into() },
            Request::Commit {
                vol: vol.into(),
                session: S2.into(),
                volume_info: "{}".into(),
            },
        ] {
            let msg = expect_error(ag.call(&req), ErrorKind::Invalid);
            assert_names(&msg, &format!("invalid volume name {}", quoted(vol)));
        }
    }
    for &ses in BAD_SESSIONS {
        let req = Request::Commit {
            vol: VOL.into(),
            session: ses.into(),
            volume_info: "{}".into(),
        };
        let msg = expect_error(ag.call(&req), ErrorKind::Invalid);
        assert_names(&msg, &format!("invalid session name {}", quoted(ses)));
    }
    // These errors do not end the session, and the archive is intact.
    assert_eq!(
        ag.call(&Request::ListVolumes),
        Response::Volumes {
            names: vec![sparsebak_common::names::VolName::new(VOL).unwrap()],
            ignored: vec![]
        }
    );
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

/// `PutSession` and `ReadFiles` errors end the session (a data stream
/// follows that cannot be skipped safely); each gets a fresh agent.
#[test]
fn invalid_names_in_streaming_requests() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let before = fx.snapshot();
    let tar = Session::sample(S2).tar();
    let put = |vol: &str, ses: &str, last: Option<&str>, needle: String| {
        let mut ag = fx.agent(true);
        let msg = expect_error(ag.put(vol, ses, last, tar.clone()), ErrorKind::Invalid);
        assert_names(&msg, &needle);
        assert_eq!(ag.finish(), Err(msg));
    };
    for &vol in BAD_VOLS {
        put(
            vol,
            S2,
            Some(S1),
            format!("invalid volume name {}", quoted(vol)),
        );
        let mut ag = fx.agent(false);
        ag.start_read(vol);
        let msg = expect_error(ag.recv().unwrap(), ErrorKind::Invalid);
        assert_names(&msg, &format!("invalid volume name {}", quoted(vol)));
        assert_eq!(ag.finish(), Err(msg));
    }
    for &ses in BAD_SESSIONS {
        let needle = format!("invalid session name {}", quoted(ses));
        put(VOL, ses, Some(S1), needle.clone());
        put(VOL, S2, Some(ses), needle);
    }
    fx.assert_unchanged(&before, &[]);
}

/// A fixture with S1 committed, and things planted in it that the layout
/// never produces.
struct Planted {
    fx: Fixture,
    s1: Session,
}

const LINK_CHUNK: u64 = 0x20000;
const DIR_CHUNK: u64 = 0x30000;
const HUGE_CHUNK: u64 = 0x40000;
const FIFO_CHUNK: u64 = 0x50000;
const MISSING_CHUNK: u64 = 0x60000;
/// A fan-out dir that is a symlink to a dir outside the archive.
const VIA_LINKED_DIR: u64 = 0x2000_0000;

fn planted() -> Planted {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    let sdir = fx.vol_dir(VOL).join(S1);
    let at = |a: u64| sdir.join(chunk_path(a));
    symlink("/etc/passwd", at(LINK_CHUNK)).unwrap();
    fs::create_dir(at(DIR_CHUNK)).unwrap();
    let huge = fs::File::create(at(HUGE_CHUNK)).unwrap();
    huge.set_len(MAX_FRAME as u64 + 4096).unwrap();
    nix::unistd::mkfifo(
        &at(FIFO_CHUNK),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();

    let elsewhere = fx.outside.join("fanout");
    fs::create_dir(&elsewhere).unwrap();
    let leaked = at(VIA_LINKED_DIR);
    fs::write(elsewhere.join(leaked.file_name().unwrap()), b"outside data").unwrap();
    symlink(&elsewhere, leaked.parent().unwrap()).unwrap();

    let tmp = fx.tmp_dir(VOL, S2);
    fs::create_dir(&tmp).unwrap();
    fs::write(tmp.join("manifest"), b"unfinished").unwrap();
    Planted { fx, s1 }
}

fn refusal(reply: &[u8]) -> String {
    assert_eq!(
        reply.first(),
        Some(&FILE_REFUSED),
        "expected a refusal, got {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(80)])
    );
    String::from_utf8(reply[1..].to_vec()).unwrap()
}

#[test]
fn read_paths_outside_the_layout_are_refused() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    let chunk0 = chunk_path(0);
    for path in [
        "../../archive.json".to_string(),
        "/etc/passwd".into(),
        format!("{}/sparsebak/archive.json", p.fx.dest.display()),
        "S_x/../../archive.json".into(),
        format!("{S1}/../../../archive.json"),
        format!("{S1}/../{S1}/manifest"),
        format!("{S1}/./manifest"),
        format!("{S1}//manifest"),
        format!("{S1}/{chunk0}/../../manifest"),
        format!("{S2}-tmp/manifest"),
        format!("{S1}-orphan/manifest"),
        format!("{S1}/volume.json"),
        "volume.json".into(),
        S1.to_string(),
        format!("{S1}/"),
        format!("{S1}/000000000"),
        String::new() + "\u{0}",
    ] {
        let msg = refusal(&ag.read_one(path.as_bytes()));
        assert_names(&msg, &quoted(&path));
    }
    let msg = refusal(&ag.read_one(b"S_20260101-000000/\xff"));
    assert_names(&msg, "S_20260101-000000/\u{fffd}");
    // Refusals do not end the stream: a good path is still served.
    let reply = ag.read_one(format!("{S1}/{chunk0}").as_bytes());
    assert_eq!(reply[0], FILE_DATA);
    assert_eq!(&reply[1..], &p.s1.chunks[0].1[..]);
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn read_of_a_symlinked_chunk_is_refused() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    let path = format!("{S1}/{}", chunk_path(LINK_CHUNK));
    let reply = ag.read_one(path.as_bytes());
    let msg = refusal(&reply);
    assert_names(&msg, &path);
    assert!(!msg.contains("root:"), "{msg}");
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn read_through_a_symlinked_directory_is_refused() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    let path = format!("{S1}/{}", chunk_path(VIA_LINKED_DIR));
    let msg = refusal(&ag.read_one(path.as_bytes()));
    assert_names(&msg, &path);
    assert!(!msg.contains("outside data"));

    // The session directory itself as a symlink to another session's copy.
    let vdir = p.fx.vol_dir(VOL);
    fs::rename(vdir.join(S1), p.fx.outside.join("moved")).unwrap();
    symlink(p.fx.outside.join("moved"), vdir.join(S1)).unwrap();
    let path = format!("{S1}/manifest");
    let msg = refusal(&ag.read_one(path.as_bytes()));
    assert_names(&msg, &path);
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn read_of_a_directory_fifo_or_huge_file_is_refused() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    for (addr, why) in [
        (DIR_CHUNK, "not a regular file"),
        (FIFO_CHUNK, "not a regular file"),
        (HUGE_CHUNK, "larger than the protocol allows"),
    ] {
        let path = format!("{S1}/{}", chunk_path(addr));
        let msg = refusal(&ag.read_one(path.as_bytes()));
        assert_names(&msg, &path);
        assert_names(&msg, why);
    }
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn read_of_a_missing_file_says_missing() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    for path in [
        format!("{S1}/{}", chunk_path(MISSING_CHUNK)),
        format!("{S3}/manifest"),
    ] {
        assert_eq!(ag.read_one(path.as_bytes()), vec![FILE_MISSING]);
    }
    assert_eq!(ag.end_read(), Response::Ok);
    // An unknown volume is not an error: its files are all missing.
    ag.start_read("other");
    assert_eq!(
        ag.read_one(format!("{S1}/manifest").as_bytes()),
        vec![FILE_MISSING]
    );
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

#[test]
fn read_path_frame_over_its_limit_ends_the_session() {
    let p = planted();
    let mut ag = p.fx.agent(false);
    ag.start_read(VOL);
    let reply = ag.read_one(&[b'a'; 4097]);
    let resp: Response = serde_json::from_slice(&reply).unwrap();
    let msg = expect_error(resp, ErrorKind::Io);
    assert_names(
        &msg,
        "reading path requests: frame of 4097 bytes exceeds the limit of 4096",
    );
    assert_eq!(ag.finish(), Err(msg));
}

#[test]
fn open_refuses_relative_and_dotdot_paths() {
    let fx = Fixture::new();
    let (dest, mp) = (fx.dest_str(), fx.mp_str());
    let cases = [
        (
            "rel/dest".to_string(),
            mp.clone(),
            "archive path \"rel/dest\" is not an absolute path",
        ),
        (
            dest.clone(),
            "tmp".into(),
            "mountpoint \"tmp\" is not an absolute path",
        ),
        (
            String::new(),
            mp.clone(),
            "archive path \"\" is not an absolute path",
        ),
        (
            format!("{dest}/../outside"),
            mp.clone(),
            "must not contain '.' or '..' components",
        ),
        (
            format!("{dest}/./x"),
            mp.clone(),
            "must not contain '.' or '..' components",
        ),
        (
            dest.clone(),
            format!("{mp}/.."),
            "must not contain '.' or '..' components",
        ),
    ];
    for (d, m, want) in cases {
        let mut ag = Agent::start();
        let msg = expect_error(ag.open(&d, &m, true), ErrorKind::Invalid);
        assert_names(&msg, want);
        // Nothing is open: writes are refused, and the session goes on.
        let init = Request::InitArchive {
            header: header_json(),
        };
        let msg = expect_error(ag.call(&init), ErrorKind::Invalid);
        assert_eq!(msg, "no archive is open");
        ag.bye();
    }
}

#[test]
fn open_refuses_a_plain_directory_as_mountpoint() {
    let fx = Fixture::uninit();
    let before = fx.snapshot();
    let mut ag = Agent::start();
    let plain = fx.root.path().to_str().unwrap().to_string();
    let msg = expect_error(ag.open(&fx.dest_str(), &plain, true), ErrorKind::NotMounted);
    assert_eq!(
        msg,
        format!("{plain} is not a mounted file system: mount the backup disk there, or fix --dest")
    );
    let msg = expect_error(
        ag.open(&fx.dest_str(), "/nonexistent-mp", true),
        ErrorKind::NotMounted,
    );
    assert_names(&msg, "mountpoint /nonexistent-mp is not available");
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn open_refuses_a_dest_outside_its_mountpoint() {
    let fx = Fixture::uninit();
    let shm = PathBuf::from("/dev/shm");
    if !is_mount_point(&shm) {
        eprintln!("skipped: /dev/shm is not a mount point here");
        return;
    }
    let mut ag = Agent::start();
    let msg = expect_error(
        ag.open(&fx.dest_str(), "/dev/shm", true),
        ErrorKind::Invalid,
    );
    assert_eq!(
        msg,
        format!(
            "archive path {} is not under mountpoint /dev/shm",
            fx.dest_str()
        )
    );
    ag.bye();
}

/// `<root>/escape` is a symlink to another file system: a dest below it is
/// not on the mountpoint the user named, however its path reads.
#[test]
fn open_refuses_a_dest_that_escapes_through_a_symlink() {
    let fx = Fixture::uninit();
    let link = fx.root.path().join("escape");
    symlink("/proc", &link).unwrap();
    let dest = link.join("archive");
    let mut ag = Agent::start();
    let msg = expect_error(
        ag.open(dest.to_str().unwrap(), &fx.mp_str(), true),
        ErrorKind::NotMounted,
    );
    assert_names(
        &msg,
        &format!("archive path {} resolves to /proc", dest.display()),
    );
    assert_names(
        &msg,
        &format!("not on the file system mounted at {}", fx.mp_str()),
    );
    ag.bye();

    // The other way round: mountpoint /dev/shm, dest a symlink from there
    // back to the disk the fixture lives on.
    let shm = PathBuf::from("/dev/shm");
    if !is_mount_point(&shm) {
        eprintln!("skipping the /dev/shm half: it is not a mount point here");
        return;
    }
    let on_shm = tempfile::tempdir_in(&shm).unwrap();
    let back = on_shm.path().join("back");
    symlink(&fx.dest, &back).unwrap();
    let dest = back.join("archive");
    let mut ag = Agent::start();
    let msg = expect_error(
        ag.open(dest.to_str().unwrap(), "/dev/shm", true),
        ErrorKind::NotMounted,
    );
    assert_names(
        &msg,
        &format!("resolves to {}", fx.dest.canonicalize().unwrap().display()),
    );
    let init = Request::InitArchive {
        header: header_json(),
    };
    assert_eq!(
        expect_error(ag.call(&init), ErrorKind::Invalid),
        "no archive is open"
    );
    ag.bye();
    assert_eq!(fs::read_dir(&fx.dest).unwrap().count(), 0);
}

/// `RewrapKey` (arch-passwd) replaces the header only by one that differs
/// from it in the wrapped key and MAC (`ArchiveHeader::rewrapped`, the one
/// check both backends use): a header changing anything else, a plain
/// header, or no header at all is refused and the archive is left as it
/// was; a new key alone is stored.
#[test]
fn rewrap_key_replaces_nothing_but_the_wrapped_key() {
    let fx = Fixture::uninit();
    let mut h: serde_json::Value = serde_json::from_str(&header_json()).unwrap();
    h["format_version"] = 2.into();
    h["encryption"] = "xchacha20poly1305".into();
    h["key"] = serde_json::json!({
        "kdf": "argon2id", "version": 19, "memory_kib": 65536, "iterations": 3,
        "parallelism": 1, "salt": "00".repeat(16), "nonce": "11".repeat(24),
        "wrapped": "22".repeat(48)
    });
    h["mac"] = "33".repeat(32).into();
    let mut ag = fx.agent(true);
    let init = Request::InitArchive {
        header: h.to_string(),
    };
    assert_eq!(ag.call(&init), Response::Ok);
    let before = fx.snapshot();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut n = h.clone();
        edit(&mut n);
        Request::RewrapKey {
            header: n.to_string(),
        }
    };
    let refused = [
        with(&|n| n["uuid"] = "another".into()),
        with(&|n| {
            n["key"]["salt"] = "44".repeat(16).into();
            n["created_utc"] = "2027-01-01T00:00:00Z".into();
        }),
        Request::RewrapKey {
            header: header_json(),
        },
        with(&|n| n["key"] = serde_json::Value::Null),
        Request::RewrapKey { header: "{".into() },
    ];
    for req in refused {
        expect_error(ag.call(&req), ErrorKind::Invalid);
    }
    fx.assert_unchanged(&before, &[]);
    let rewrap = with(&|n| {
        n["key"]["salt"] = "44".repeat(16).into();
        n["key"]["wrapped"] = "55".repeat(48).into();
        n["mac"] = "66".repeat(32).into();
    });
    assert_eq!(ag.call(&rewrap), Response::Ok);
    ag.bye();
    let Request::RewrapKey { header } = rewrap else {
        unreachable!()
    };
    let stored = fs::read_to_string(fx.archive_dir().join(sparsebak_common::HEADER_FILE)).unwrap();
    assert_eq!(stored, header);
}
