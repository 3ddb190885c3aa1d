//! `ReadMeta`: serving `volume.json` and a committed session's `info.json`
//! and `manifest` in pieces, with the same path rules as `ReadFiles`: only
//! layout names, no symlink at any component, regular files only.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    read_frame, ErrorKind, RawRequest as Request, Response, FEATURE_READ_META, MAX_FRAME,
    META_PIECE, PROTOCOL_VERSION,
};
use std::fs;
use std::os::unix::fs::symlink;

/// One `ReadMeta` call: `Ok((size, bytes))` or the error reply.
fn read_meta(
    ag: &mut Agent,
    vol: &str,
    path: &str,
    offset: u64,
) -> Result<(u64, Vec<u8>), Response> {
    let r = ag.call(&Request::ReadMeta {
        vol: vol.into(),
        path: path.into(),
        offset,
    });
    match r {
        Response::MetaPiece { size, len } => {
            let data = read_frame(ag.sock(), MAX_FRAME)
                .unwrap()
                .expect("the piece");
            assert_eq!(
                data.len() as u64,
                len,
                "the frame carries what was announced"
            );
            assert!(data.len() <= META_PIECE);
            Ok((size, data))
        }
        other => Err(other),
    }
}

/// A whole file, piece by piece; also returns how many pieces it took.
fn read_all(ag: &mut Agent, path: &str) -> (Vec<u8>, usize) {
    let (mut out, mut pieces) = (Vec::new(), 0);
    loop {
        let (size, data) = read_meta(ag, VOL, path, out.len() as u64).unwrap();
        pieces += 1;
        out.extend_from_slice(&data);
        if out.len() as u64 == size {
            return (out, pieces);
        }
        assert!(!data.is_empty(), "no progress at {} of {size}", out.len());
    }
}

#[test]
fn hello_advertises_read_meta() {
    let mut ag = Agent::start_silent();
    match ag.call(&Request::Hello {
        protocol: PROTOCOL_VERSION,
    }) {
        Response::Hello { features, .. } => {
            assert!(features.contains(&FEATURE_READ_META.to_string()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn committed_metadata_is_served_exactly() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    let s2 = fx.commit_session(S2, Some(S1));
    let mut ag = fx.agent(false);
    assert_eq!(read_all(&mut ag, &format!("{S1}/manifest")).0, s1.manifest);
    assert_eq!(read_all(&mut ag, &format!("{S2}/info.json")).0, s2.info);
    assert_eq!(
        read_all(&mut ag, "volume.json").0,
        s2.volume_info.as_bytes()
    );
    // From an offset inside the file, and exactly at its end.
    let (size, tail) = read_meta(&mut ag, VOL, &format!("{S1}/manifest"), 10).unwrap();
    assert_eq!(
        (size, tail.as_slice()),
        (s1.manifest.len() as u64, &s1.manifest[10..])
    );
    let (_, none) = read_meta(&mut ag, VOL, &format!("{S1}/manifest"), size).unwrap();
    assert!(none.is_empty());
    let past = read_meta(&mut ag, VOL, &format!("{S1}/manifest"), size + 1).unwrap_err();
    assert_names(&expect_error(past, ErrorKind::Invalid), "past the end");
    ag.bye();
}

/// A manifest larger than a frame (a 1 TiB volume's is ~2.3 GiB) crosses in
/// pieces of at most META_PIECE bytes.
#[test]
fn a_manifest_larger_than_a_frame_is_served_in_pieces() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let big: Vec<u8> = (0..MAX_FRAME + 3 * 1024 * 1024 + 17)
        .map(|i| b"0123456789abcdef\n"[i % 17])
        .collect();
    fs::write(fx.vol_dir(VOL).join(S1).join("manifest"), &big).unwrap();
    let mut ag = fx.agent(false);
    let (got, pieces) = read_all(&mut ag, &format!("{S1}/manifest"));
    assert!(got == big, "the pieces reassemble the file");
    assert_eq!(pieces, big.len().div_ceil(META_PIECE));
    ag.bye();
}

#[test]
fn paths_the_layout_could_not_have_produced_are_refused() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let vdir = fx.vol_dir(VOL);
    fs::create_dir(vdir.join(format!("{S2}-tmp"))).unwrap();
    fs::write(vdir.join(format!("{S2}-tmp/manifest")), b"in progress").unwrap();
    fs::create_dir(vdir.join(".prune-plan-tmp")).unwrap();
    fs::write(vdir.join(".prune-plan-tmp/manifest"), b"plan").unwrap();
    let before = fx.snapshot();
    let mut ag = fx.agent(false);
    for bad in [
        "archive.json",
        "../../archive.json",
        "/etc/passwd",
        &format!("{S2}-tmp/manifest"),
        &format!("{S1}-orphan/manifest"),
        ".prune-plan-tmp/manifest",
        &format!("{S1}/000000000/x0000000000000000"),
        &format!("{S1}/../{S1}/manifest"),
        &format!("{S1}//manifest"),
        &format!("{S1}/manifest/"),
    ] {
        let e = read_meta(&mut ag, VOL, bad, 0).unwrap_err();
        assert_names(&expect_error(e, ErrorKind::Invalid), "refused path");
    }
    for vol in ["..", "a/b", "-x", ""] {
        let e = read_meta(&mut ag, vol, "volume.json", 0).unwrap_err();
        expect_error(e, ErrorKind::Invalid);
    }
    let e = read_meta(&mut ag, VOL, &format!("{S3}/manifest"), 0).unwrap_err();
    assert_names(
        &expect_error(e, ErrorKind::NotFound),
        "is not in the archive",
    );
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn symlinks_and_special_files_are_never_followed() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let vdir = fx.vol_dir(VOL);
    let canary = fx.outside.join("canary");
    // A symlink as the manifest, as info.json's session dir, as the volume dir.
    fs::remove_file(vdir.join(S1).join("manifest")).unwrap();
    symlink(&canary, vdir.join(S1).join("manifest")).unwrap();
    fs::create_dir(fx.outside.join(S2)).unwrap();
    fs::write(fx.outside.join(S2).join("info.json"), b"{}").unwrap();
    symlink(fx.outside.join(S2), vdir.join(S2)).unwrap();
    symlink(&vdir, fx.vol_dir("alias")).unwrap();
    fs::remove_file(vdir.join(S1).join("info.json")).unwrap();
    nix::unistd::mkfifo(
        &vdir.join(S1).join("info.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let before = fx.snapshot();
    let mut ag = fx.agent(false);
    for (vol, path) in [
        (VOL, format!("{S1}/manifest")),
        (VOL, format!("{S2}/info.json")),
        ("alias", "volume.json".to_string()),
        (VOL, format!("{S1}/info.json")),
    ] {
        let e = read_meta(&mut ag, vol, &path, 0).unwrap_err();
        let m = expect_error(e, ErrorKind::Invalid);
        assert_names(&m, &format!("cannot read {path} of volume {vol}"));
        assert!(!m.contains("do not touch"), "{m}");
    }
    // The errors do not end the session.
    assert!(read_meta(&mut ag, VOL, "volume.json", 0).is_ok());
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}
