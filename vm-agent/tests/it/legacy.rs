//! The agent serving a sparsebak 0.2 archive (`sparsebak/default/<vol>/S_*/…`):
//! read-only (nothing created, not even a lock), only 0.2 chunk paths, never
//! through a symlink, only regular files.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    ErrorKind, RawRequest as Request, Response, FILE_DATA, FILE_MISSING, FILE_REFUSED,
};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

const LVOL: &str = "vm-old-private";
const LS: &str = "S_20190601-120000";
const CHUNK0: &str = "000000000/x0000000000000000";

/// A 0.2 tree with one chunk file; returns the fixture and the chunk's path.
fn legacy_fixture() -> (Fixture, PathBuf) {
    let fx = Fixture::uninit();
    let vdir = fx.dest.join("sparsebak/default").join(LVOL);
    let c = vdir.join(LS).join(CHUNK0);
    fs::create_dir_all(c.parent().unwrap()).unwrap();
    fs::write(&c, b"zlib bytes of chunk 0").unwrap();
    fs::write(vdir.join(LS).join("manifest"), b"0 x0000000000000000\n").unwrap();
    fs::write(vdir.join(LS).join("info"), b"volsize = 1\n").unwrap();
    fs::write(fx.dest.join("sparsebak/default/archive.ini"), b"[var]\n").unwrap();
    (fx, c)
}

fn open_legacy(fx: &Fixture) -> Agent {
    let mut ag = Agent::start();
    let r = ag.call(&Request::OpenLegacy {
        dest_path: fx.dest_str(),
        mountpoint: fx.mp_str(),
    });
    assert!(matches!(r, Response::Opened { header: None, .. }), "{r:?}");
    ag
}

#[test]
fn serves_0_2_chunks_and_nothing_else_without_writing() {
    let (fx, _) = legacy_fixture();
    let before = fx.snapshot();
    let mut ag = open_legacy(&fx);
    ag.start_read(LVOL);
    let r = ag.read_one(format!("{LS}/{CHUNK0}").as_bytes());
    assert_eq!((r[0], &r[1..]), (FILE_DATA, &b"zlib bytes of chunk 0"[..]));
    let r = ag.read_one(format!("{LS}/000000000/x0000000000010000").as_bytes());
    assert_eq!(r, vec![FILE_MISSING]);
    for bad in [
        format!("{LS}/manifest"),
        format!("{LS}/info"),
        format!("{LS}-tmp/{CHUNK0}"),
        format!("../{LVOL}/{LS}/{CHUNK0}"),
        format!("{LS}/000000001/x0000000000000000"),
        format!("{LS}/{CHUNK0}/"),
        "archive.ini".to_string(),
    ] {
        let r = ag.read_one(bad.as_bytes());
        assert_eq!(r[0], FILE_REFUSED, "{bad} was served");
    }
    assert_eq!(ag.end_read(), Response::Ok);
    // Nothing but reading is accepted on a 0.2 archive.
    for req in [
        Request::ListVolumes,
        Request::ListSessions { vol: LVOL.into() },
        Request::DeleteVolume { vol: LVOL.into() },
        Request::InitArchive {
            header: header_json(),
        },
        Request::DeleteArchive { uuid: "x".into() },
    ] {
        let msg = expect_error(ag.call(&req), ErrorKind::Invalid);
        assert_names(&msg, "sparsebak 0.2 archive, which is read-only");
    }
    ag.bye();
    fx.assert_unchanged(&before, &[]);
    assert!(!fx.dest.join("sparsebak/.lock").exists());
}

#[test]
fn planted_symlinks_and_special_files_are_refused() {
    let (fx, chunk) = legacy_fixture();
    let sdir = chunk.parent().unwrap().parent().unwrap().to_path_buf();
    let vdir = sdir.parent().unwrap().to_path_buf();
    // A symlinked chunk file, a FIFO and a directory in place of chunks.
    let c1 = sdir.join("000000000/x0000000000010000");
    symlink(fx.outside.join("canary"), &c1).unwrap();
    let c2 = sdir.join("000000000/x0000000000020000");
    nix::unistd::mkfifo(&c2, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let c3 = sdir.join("000000000/x0000000000030000");
    fs::create_dir(&c3).unwrap();
    // A symlinked session dir and a symlinked volume dir leading outside.
    let outside_ses = fx.outside.join("S");
    fs::create_dir_all(outside_ses.join("000000000")).unwrap();
    fs::write(outside_ses.join(CHUNK0), b"outside").unwrap();
    symlink(&outside_ses, vdir.join("S_20190602-120000")).unwrap();
    symlink(&vdir, fx.dest.join("sparsebak/default/vm-link")).unwrap();
    let before = fx.snapshot();
    let mut ag = open_legacy(&fx);
    ag.start_read(LVOL);
    for p in [
        format!("{LS}/000000000/x0000000000010000"),
        format!("{LS}/000000000/x0000000000020000"),
        format!("{LS}/000000000/x0000000000030000"),
        format!("S_20190602-120000/{CHUNK0}"),
    ] {
        let r = ag.read_one(p.as_bytes());
        assert_eq!(r[0], FILE_REFUSED, "{p}: {:?}", String::from_utf8_lossy(&r));
    }
    assert_eq!(ag.end_read(), Response::Ok);
    ag.start_read("vm-link");
    let r = ag.read_one(format!("{LS}/{CHUNK0}").as_bytes());
    assert_eq!(r[0], FILE_REFUSED, "served through a symlinked volume dir");
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn hostile_volume_names_end_the_stream() {
    for bad in ["..", ".", "a/b", "", "x y"] {
        let (fx, _) = legacy_fixture();
        let mut ag = open_legacy(&fx);
        ag.start_read(bad);
        let msg = expect_error(ag.recv().expect("an answer"), ErrorKind::Invalid);
        assert_names(&msg, "invalid volume name");
        assert!(ag.finish().is_err());
    }
}

#[test]
fn open_legacy_needs_a_real_default_dir() {
    let fx = Fixture::uninit();
    let mut ag = Agent::start();
    let open = |ag: &mut Agent| {
        ag.call(&Request::OpenLegacy {
            dest_path: fx.dest_str(),
            mountpoint: fx.mp_str(),
        })
    };
    let msg = expect_error(open(&mut ag), ErrorKind::NotFound);
    assert_names(&msg, "no sparsebak 0.2 archive");
    fs::create_dir(fx.dest.join("sparsebak")).unwrap();
    fs::create_dir(fx.outside.join("default")).unwrap();
    symlink(
        fx.outside.join("default"),
        fx.dest.join("sparsebak/default"),
    )
    .unwrap();
    let msg = expect_error(open(&mut ag), ErrorKind::Invalid);
    assert_names(&msg, "not a directory");
    ag.bye();
    assert!(!fx.dest.join("sparsebak/.lock").exists());
}
