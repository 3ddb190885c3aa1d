//! Symlinks planted inside the archive by whoever else can write the backup
//! disk. The agent must not write through them to anything outside the
//! archive, nor let them move the archive off the mounted file system.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{ErrorKind, RawRequest as Request, Response, FILE_DATA};
use std::fs;
use std::os::unix::fs::symlink;

#[test]
fn symlinked_volume_dir_is_not_written_through() {
    let fx = Fixture::new();
    let vdir = fx.vol_dir(VOL);
    symlink(&fx.outside, &vdir).unwrap();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put(VOL, S1, None, Session::sample(S1).tar()),
        ErrorKind::Invalid,
    );
    assert_names(&msg, &vdir.display().to_string());
    assert_names(&msg, "refusing to write through it");
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn symlinked_volumes_dir_is_not_written_through() {
    let fx = Fixture::new();
    let volumes = fx.archive_dir().join("volumes");
    fs::remove_dir(&volumes).unwrap();
    symlink(&fx.outside, &volumes).unwrap();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(
        ag.put(VOL, S1, None, Session::sample(S1).tar()),
        ErrorKind::Invalid,
    );
    assert_names(&msg, &volumes.display().to_string());
    assert_eq!(ag.finish(), Err(msg));
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn reads_do_not_follow_a_symlinked_volume_dir() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let vdir = fx.vol_dir(VOL);
    let moved = fx.outside.join("vol");
    fs::rename(&vdir, &moved).unwrap();
    symlink(&moved, &vdir).unwrap();
    let mut ag = fx.agent(false);
    ag.start_read(VOL);
    let path = format!("{S1}/manifest");
    let reply = ag.read_one(path.as_bytes());
    assert_ne!(reply[0], FILE_DATA, "served through a symlinked volume dir");
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
}

/// `write_atomic` writes `<file>.tmp-write` then renames it: a planted
/// symlink by that name must not redirect the write.
#[test]
fn planted_temp_file_symlink_is_not_written_through() {
    let fx = Fixture::new();
    let s1 = Session::sample(S1);
    let mut ag = fx.agent(true);
    assert!(matches!(
        ag.put(VOL, S1, None, s1.tar()),
        Response::Stored { .. }
    ));
    let canary = fx.outside.join("canary");
    symlink(&canary, fx.vol_dir(VOL).join("volume.tmp-write")).unwrap();
    let before = fs::read(&canary).unwrap();
    let commit = Request::Commit {
        vol: VOL.into(),
        session: S1.into(),
        volume_info: s1.volume_info.clone(),
    };
    assert_eq!(ag.call(&commit), Response::Ok);
    ag.bye();
    assert_eq!(
        fs::read(&canary).unwrap(),
        before,
        "the canary was overwritten"
    );
    let vfile = fx.vol_dir(VOL).join("volume.json");
    assert!(!fs::symlink_metadata(&vfile)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(vfile).unwrap(), s1.volume_info);
}

#[test]
fn planted_lock_symlink_is_refused() {
    let fx = Fixture::new();
    let lock = fx.archive_dir().join(".lock");
    fs::remove_file(&lock).unwrap();
    symlink(fx.outside.join("canary"), &lock).unwrap();
    let before = fx.snapshot();
    let mut ag = Agent::start();
    let msg = expect_error(ag.open(&fx.dest_str(), &fx.mp_str(), true), ErrorKind::Io);
    assert_names(&msg, &format!("cannot open lock file {}", lock.display()));
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

/// The archive dir itself (`<dest>/sparsebak`) a symlink to another file
/// system: the mountpoint check must look at it, not only at `<dest>`.
#[test]
fn symlinked_archive_dir_on_another_file_system_is_refused() {
    let shm = std::path::Path::new("/dev/shm");
    if !is_mount_point(shm) {
        eprintln!("skipped: /dev/shm is not a mount point here");
        return;
    }
    let fx = Fixture::new();
    let elsewhere = tempfile::tempdir_in(shm).unwrap();
    let moved = elsewhere.path().join("sparsebak");
    // Not fs::rename: it is another file system.
    copy_tree(&fx.archive_dir(), &moved);
    fs::remove_dir_all(fx.archive_dir()).unwrap();
    symlink(&moved, fx.archive_dir()).unwrap();
    let mut ag = Agent::start();
    let msg = expect_error(
        ag.open(&fx.dest_str(), &fx.mp_str(), true),
        ErrorKind::NotMounted,
    );
    assert_names(&msg, &format!("resolves to {}", moved.display()));
    ag.bye();
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}
