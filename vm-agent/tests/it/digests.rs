//! `SessionDigests`: the sha256 of each committed session's `info.json`
//! and of `volume.json`, in pages, with the `ReadMeta` path rules: no
//! symlink at any component, regular files only, bounded size. A file that
//! fails is listed with the reason, never skipped; nothing is written.

use crate::support::*;
use sha2::{Digest, Sha256};
use sparsebak_common::proto::{
    RawRequest as Request, Response, SessionDigest, DIGEST_PAGE, FEATURE_SESSION_DIGESTS,
    PROTOCOL_VERSION,
};
use std::fs;
use std::os::unix::fs::symlink;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn digests(ag: &mut Agent, after: Option<&str>) -> (Vec<SessionDigest>, Option<String>, bool) {
    match ag.call(&Request::SessionDigests {
        vol: VOL.into(),
        after: after.map(Into::into),
    }) {
        Response::SessionDigests {
            sessions,
            volume_sha256,
            more,
        } => (sessions, volume_sha256, more),
        other => panic!("{other:?}"),
    }
}

#[test]
fn hello_advertises_session_digests() {
    let mut ag = Agent::start_silent();
    match ag.call(&Request::Hello {
        protocol: PROTOCOL_VERSION,
    }) {
        Response::Hello { features, .. } => {
            assert!(features.contains(&FEATURE_SESSION_DIGESTS.to_string()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn committed_sessions_are_listed_with_their_digests_and_nothing_is_written() {
    let fx = Fixture::new();
    let s1 = fx.commit_session(S1, None);
    let s2 = fx.commit_session(S2, Some(S1));
    fs::create_dir(fx.tmp_dir(VOL, S3)).unwrap();
    fs::create_dir(fx.vol_dir(VOL).join(format!("{S0}-orphan"))).unwrap();
    let before = fx.snapshot();
    let mut ag = fx.agent(false);
    let (list, vol, more) = digests(&mut ag, None);
    assert!(!more);
    assert_eq!(vol, Some(sha(s2.volume_info.as_bytes())));
    let got: Vec<(String, Option<String>)> = list
        .iter()
        .map(|d| (d.name.to_string(), d.info_sha256.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (S1.to_string(), Some(sha(&s1.info))),
            (S2.to_string(), Some(sha(&s2.info)))
        ]
    );
    let (after, vol, _) = digests(&mut ag, Some(S1));
    assert_eq!((after.len(), vol), (1, None));
    ag.bye();
    fx.assert_unchanged(&before, &[]);
}

#[test]
fn unservable_info_files_are_listed_with_the_reason() {
    let fx = Fixture::new();
    for (s, prev) in [(S0, None), (S1, Some(S0)), (S2, Some(S1)), (S3, Some(S2))] {
        fx.commit_session(s, prev);
    }
    let vdir = fx.vol_dir(VOL);
    let outside = fx.archive_dir().join("archive.json");
    fs::remove_file(vdir.join(S0).join("info.json")).unwrap();
    symlink(&outside, vdir.join(S0).join("info.json")).unwrap();
    fs::write(vdir.join(S1).join("info.json"), vec![b' '; 64 * 1024 + 1]).unwrap();
    fs::remove_file(vdir.join(S2).join("info.json")).unwrap();
    nix::unistd::mkfifo(
        &vdir.join(S2).join("info.json"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    // A session directory that is a symlink to another session.
    fs::rename(vdir.join(S3), fx.archive_dir().join("elsewhere")).unwrap();
    symlink(fx.archive_dir().join("elsewhere"), vdir.join(S3)).unwrap();
    fs::remove_file(vdir.join("volume.json")).unwrap();
    let mut ag = fx.agent(false);
    let (list, vol, _) = digests(&mut ag, None);
    assert_eq!(vol, None);
    assert_eq!(list.len(), 4);
    for d in &list {
        assert_eq!(d.info_sha256, None, "{d:?}");
    }
    let why: Vec<&str> = list.iter().map(|d| d.problem.as_deref().unwrap()).collect();
    assert!(why[0].starts_with("cannot be read"), "{why:?}");
    assert_eq!(why[1], "is larger than 65536 bytes");
    assert!(why[2].starts_with("cannot be read"), "{why:?}");
    assert!(why[3].starts_with("cannot be read"), "{why:?}");
    ag.bye();
}

#[test]
fn many_sessions_come_in_pages() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let vdir = fx.vol_dir(VOL);
    let n = DIGEST_PAGE + 5;
    for i in 0..n {
        let s = format!(
            "S_2027{:02}{:02}-{:06}",
            1 + i / 28 % 12,
            1 + i % 28,
            i / 336
        );
        fs::create_dir(vdir.join(&s)).unwrap();
        fs::write(vdir.join(&s).join("info.json"), s.as_bytes()).unwrap();
    }
    let mut ag = fx.agent(false);
    let (first, _, more) = digests(&mut ag, None);
    assert!(more);
    assert_eq!(first.len(), DIGEST_PAGE);
    let last = first.last().unwrap().name.to_string();
    let (second, _, more) = digests(&mut ag, Some(&last));
    assert!(!more);
    assert_eq!(first.len() + second.len(), n + 1);
    let all: Vec<_> = first
        .iter()
        .chain(&second)
        .map(|d| d.name.clone())
        .collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    let named = &second[0];
    assert_eq!(named.info_sha256, Some(sha(named.name.as_str().as_bytes())));
    ag.bye();
}

#[test]
fn invalid_names_are_refused_naming_the_field_and_the_session_goes_on() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let mut ag = fx.agent(false);
    for (vol, after) in [
        ("..", None),
        ("a/b", None),
        (VOL, Some("S_1/../x")),
        (VOL, Some("../../etc")),
    ] {
        let r = ag.call(&Request::SessionDigests {
            vol: vol.into(),
            after: after.map(Into::into),
        });
        let m = expect_error(r, sparsebak_common::proto::ErrorKind::Invalid);
        let what = match after {
            Some(a) => format!("{a:?}"),
            None => format!("invalid volume name {vol:?}"),
        };
        assert_names(&m, &what);
    }
    // A volume that does not exist is simply empty.
    match ag.call(&Request::SessionDigests {
        vol: "nothing-here".into(),
        after: None,
    }) {
        Response::SessionDigests {
            sessions,
            volume_sha256,
            more,
        } => {
            assert!(sessions.is_empty() && volume_sha256.is_none() && !more)
        }
        other => panic!("{other:?}"),
    }
    let (list, _, _) = digests(&mut ag, None);
    assert_eq!(list.len(), 1);
    ag.bye();
}
