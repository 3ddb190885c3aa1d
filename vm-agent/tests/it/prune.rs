//! Prune on the agent: the plan is carried out by renames only, checked
//! before anything moves, replayed after the agent is killed at any step,
//! and never reaches outside the archive. Also DeleteArchive and the
//! volume-name checks of DeleteVolume.

use crate::prune_support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{ErrorKind, RawRequest as Request, Response, FILE_DATA};
use std::collections::BTreeMap;
use std::fs;

fn pruned(moved: u64, already_done: bool) -> Option<Response> {
    Some(Response::Pruned {
        moved,
        already_done,
    })
}

fn error_kind(r: &Response) -> ErrorKind {
    match r {
        Response::Error { kind, .. } => *kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_text(r: &Response) -> String {
    match r {
        Response::Error { message, .. } => message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Run the standard prune to the end on a fresh fixture; its final tree.
fn reference_tree() -> BTreeMap<String, String> {
    let fx = Fixture::new();
    let mut a = fx.agent(true, &[]);
    let (p, m, i) = standard_plan();
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    assert_eq!(a.prune(S3, &[S2]), pruned(1, false));
    a.bye();
    fx.tree()
}

#[test]
fn prune_moves_surviving_files_and_replaces_the_target() {
    let fx = Fixture::new();
    let s2_chunk1_inode =
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(fx.file(S2, K)).unwrap());
    let mut a = fx.agent(true, &[]);
    let (p, m, i) = standard_plan();
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    assert_eq!(a.prune(S3, &[S2]), pruned(1, false));
    // Moved by rename: same inode, same bytes.
    let moved = fx.file(S3, K);
    assert_eq!(fs::read(&moved).unwrap(), chunk(S2, K));
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&moved).unwrap()),
        s2_chunk1_inode
    );
    // The target keeps its own chunk 2; S2's shadowed 2 and its 4 are gone.
    assert_eq!(fs::read(fx.file(S3, 2 * K)).unwrap(), chunk(S3, 2 * K));
    assert!(!fx.file(S3, 4 * K).exists());
    let vd = fx.vol_dir();
    assert!(!vd.join(S2).exists());
    assert_eq!(fs::read_to_string(vd.join(S3).join("manifest")).unwrap(), m);
    assert_eq!(
        fs::read_to_string(vd.join(S3).join("info.json")).unwrap(),
        i
    );
    let names: Vec<String> = fs::read_dir(&vd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with(".prune") && !n.ends_with("-pruned")),
        "{names:?}"
    );
    assert_eq!(
        a.call(&Request::ListSessions { vol: VOL.into() }),
        Response::Sessions {
            committed: [S1, S3, S4]
                .map(|s| sparsebak_common::names::SessionName::new(s).unwrap())
                .to_vec(),
            in_progress: vec![]
        }
    );
    let f = a.read_file(&format!("{S3}/000000000/x{:016x}", K)).unwrap();
    assert_eq!(f[0], FILE_DATA);
    assert_eq!(&f[1..], &chunk(S2, K)[..]);
    // dom0 replaying the same plan is told it is done; a different plan is
    // refused.
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    assert_eq!(a.prune(S3, &[S2]), pruned(0, true));
    assert_eq!(a.upload(VOL, &p, "another manifest\n", &i), Response::Ok);
    let r = a.prune(S3, &[S2]).unwrap();
    assert_eq!(error_kind(&r), ErrorKind::Mismatch, "{r:?}");
    a.bye();
    assert_eq!(
        fs::read(fx.outside.join("canary")).unwrap(),
        b"do not touch\n"
    );
}

#[test]
fn several_sessions_into_one_and_an_empty_move_list() {
    let fx = Fixture::new();
    let mut a = fx.agent(true, &[]);
    // S1 and S2 into S3: 0 and 3 from S1, 1 from S2 (S2's, the newer).
    let p = plan_text(VOL, S3, &[S1, S2], &[(0, 0), (1, K), (0, 3 * K)]);
    assert_eq!(a.upload(VOL, &p, "m\n", "{}"), Response::Ok);
    assert_eq!(a.prune(S3, &[S1, S2]), pruned(3, false));
    for (addr, from) in [(0, S1), (K, S2), (2 * K, S3), (3 * K, S1), (5 * K, S3)] {
        assert_eq!(
            fs::read(fx.file(S3, addr)).unwrap(),
            chunk(from, addr),
            "{addr:x}"
        );
    }
    assert!(!fx.vol_dir().join(S1).exists());
    // Nothing to move at all (S4's only chunk wins): S3 into S4.
    let p = plan_text(VOL, S4, &[S3], &[]);
    assert_eq!(a.upload(VOL, &p, "m4\n", "{}"), Response::Ok);
    assert_eq!(a.prune(S4, &[S3]), pruned(0, false));
    assert!(!fx.vol_dir().join(S3).exists());
    a.bye();
}

#[test]
fn bad_requests_and_plans_change_nothing() {
    let fx = Fixture::new();
    let mut a = fx.agent(true, &[]);
    let before = fx.tree();
    let (p, m, i) = standard_plan();
    // Names that could escape the archive are refused outright.
    for vol in ["..", "../outside", "/etc", "a/b", ".", ""] {
        let r = a.call(&Request::PrunePart {
            vol: vol.into(),
            file: "plan".into(),
            offset: 0,
            data: p.clone(),
        });
        assert_eq!(error_kind(&r), ErrorKind::Invalid, "{vol}: {r:?}");
        let r = a.call(&Request::DeleteVolume { vol: vol.into() });
        assert_eq!(error_kind(&r), ErrorKind::Invalid, "{vol}: {r:?}");
    }
    for file in ["../../outside/canary", "x", "manifest/..", ".lock"] {
        let r = a.call(&Request::PrunePart {
            vol: VOL.into(),
            file: file.into(),
            offset: 0,
            data: "x".into(),
        });
        assert!(error_text(&r).contains("not a prune plan file"), "{r:?}");
    }
    let r = a.prune(S3, &["S_../../x"]).unwrap();
    assert_eq!(error_kind(&r), ErrorKind::Invalid, "{r:?}");
    // Nothing uploaded yet.
    let r = a.prune(S3, &[S2]).unwrap();
    assert!(error_text(&r).contains("not uploaded completely"), "{r:?}");
    // Parts must continue where the file ends.
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    let r = a.call(&Request::PrunePart {
        vol: VOL.into(),
        file: "manifest".into(),
        offset: 5,
        data: "x".into(),
    });
    assert!(error_text(&r).contains("part starts at 5"), "{r:?}");
    let cases: Vec<(String, &str, Vec<&str>, &str)> = vec![
        (p.clone(), S3, vec![S1], "not the one requested"),
        (p.clone(), S4, vec![S2], "not the one requested"),
        (
            plan_text(VOL, S2, &[S3], &[]),
            S2,
            vec![S3],
            "older than the target",
        ),
        (plan_text(VOL, S4, &[S2], &[]), S4, vec![S2], "lies between"),
        (
            plan_text(VOL, S3, &[S2], &[(0, K), (0, K)]),
            S3,
            vec![S2],
            "repeated",
        ),
        (
            plan_text("vol2", S3, &[S2], &[]),
            S3,
            vec![S2],
            "not the one requested",
        ),
        (
            plan_text(VOL, S3, &[S2], &[])
                .replace("end 0", "move S_20260101-000000 x0000000000000000\nend 1"),
            S3,
            vec![S2],
            "not a pruned session",
        ),
        (
            plan_text(VOL, "S_20260103-000001", &[S2], &[]),
            "S_20260103-000001",
            vec![S2],
            "not in the archive",
        ),
        (
            plan_text(VOL, S4, &["S_20260103-000001"], &[]),
            S4,
            vec!["S_20260103-000001"],
            "not in the archive",
        ),
    ];
    for (plan, target, list, want) in cases {
        assert_eq!(a.upload(VOL, &plan, &m, &i), Response::Ok);
        let r = a.prune(target, &list).unwrap();
        assert!(error_text(&r).contains(want), "{plan}: {r:?}");
    }
    let mut after = fx.tree();
    after.retain(|k, _| !k.contains(".prune-plan-tmp"));
    assert_eq!(after, before);
    a.bye();
}

#[test]
fn a_planted_symlink_is_never_followed() {
    let fx = Fixture::new();
    // The fan-out dir of S2 now points outside, where a chunk-named file waits.
    let fan = fx.vol_dir().join(S2).join("000000000");
    fs::remove_dir_all(&fan).unwrap();
    let bait = fx.outside.join(format!("x{:016x}", K));
    fs::write(&bait, b"outside").unwrap();
    std::os::unix::fs::symlink(&fx.outside, &fan).unwrap();
    let mut a = fx.agent(true, &[]);
    let (p, m, i) = standard_plan();
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    let r = a.prune(S3, &[S2]).unwrap();
    assert!(error_text(&r).contains("cannot open"), "{r:?}");
    a.bye();
    assert_eq!(fs::read(&bait).unwrap(), b"outside");
    assert!(!fx.file(S3, K).exists());
}

/// Kill the agent at one step of the standard prune, then check: a reader
/// is refused, a writer's next request completes it, and dom0's replay of
/// the same plan is told it is done.
fn crash_then_recover(hook: (&str, &str), via: &str) {
    let fx = Fixture::new();
    let mut a = fx.agent(true, &[(hook.0, hook.1.to_string())]);
    let (p, m, i) = standard_plan();
    assert_eq!(a.upload(VOL, &p, &m, &i), Response::Ok);
    assert_eq!(
        a.prune(S3, &[S2]),
        None,
        "{hook:?}: the agent should have died"
    );
    assert!(!a.wait_dead().success());
    assert!(
        fx.vol_dir().join(".prune-plan").join("plan").is_file(),
        "{hook:?}"
    );
    let mut ro = fx.agent(false, &[]);
    let r = ro.read_file(&format!("{S1}/manifest")).unwrap_err();
    assert!(error_text(&r).contains("unfinished prune"), "{r:?}");
    let mut w = fx.agent(true, &[]);
    match via {
        "read" => {
            let f = w.read_file(&format!("{S3}/000000000/x{:016x}", K)).unwrap();
            assert_eq!(&f[1..], &chunk(S2, K)[..]);
        }
        "put" => w.put_session("S_20260105-000000", Some(S4), &[(0, b"new".to_vec())]),
        _ => {
            assert_eq!(w.upload(VOL, &p, &m, &i), Response::Ok);
            assert_eq!(w.prune(S3, &[S2]), pruned(0, true));
        }
    }
    w.bye();
    let mut tree = fx.tree();
    tree.retain(|k, _| !k.contains("S_20260105-000000") && !k.ends_with("volume.json"));
    let mut want = reference_tree();
    want.retain(|k, _| !k.ends_with("volume.json"));
    assert_eq!(tree, want, "{hook:?} via {via}");
}

#[test]
fn killed_at_every_step_the_next_request_completes_the_prune() {
    let hooks = [
        ("SPARSEBAK_AGENT_CRASH_AT", "plan"),
        ("SPARSEBAK_AGENT_CRASH_AFTER_RENAMES", "0"),
        ("SPARSEBAK_AGENT_CRASH_AFTER_RENAMES", "1"),
        ("SPARSEBAK_AGENT_CRASH_AT", "target"),
        ("SPARSEBAK_AGENT_CRASH_AT", "removed"),
    ];
    for (n, hook) in hooks.iter().enumerate() {
        crash_then_recover(*hook, ["read", "put", "prune"][n % 3]);
    }
}

#[test]
fn killed_midway_through_many_renames() {
    let fx = Fixture::new();
    // S1's 0 and 3 and S2's 1 move into S3; die after the second rename.
    let p = plan_text(VOL, S3, &[S1, S2], &[(0, 0), (1, K), (0, 3 * K)]);
    let env = [("SPARSEBAK_AGENT_CRASH_AFTER_RENAMES", "2".to_string())];
    let mut a = fx.agent(true, &env);
    assert_eq!(a.upload(VOL, &p, "m\n", "{}"), Response::Ok);
    assert_eq!(a.prune(S3, &[S1, S2]), None);
    a.wait_dead();
    assert!(fx.file(S3, K).exists() && !fx.file(S3, 3 * K).exists());
    let mut w = fx.agent(true, &[]);
    assert_eq!(w.upload(VOL, &p, "m\n", "{}"), Response::Ok);
    assert_eq!(w.prune(S3, &[S1, S2]), pruned(0, true));
    w.bye();
    for (addr, from) in [(0, S1), (K, S2), (2 * K, S3), (3 * K, S1), (5 * K, S3)] {
        assert_eq!(
            fs::read(fx.file(S3, addr)).unwrap(),
            chunk(from, addr),
            "{addr:x}"
        );
    }
    assert!(!fx.vol_dir().join(S1).exists() && !fx.vol_dir().join(S2).exists());
}

#[test]
fn delete_archive_needs_its_uuid_and_stays_inside_dest() {
    let fx = Fixture::new();
    fs::write(fx.dest.join("user-file"), b"mine").unwrap();
    let mut a = fx.agent(true, &[]);
    let r = a.call(&Request::DeleteArchive {
        uuid: "another-archive".into(),
    });
    assert_eq!(error_kind(&r), ErrorKind::Mismatch, "{r:?}");
    assert!(fx.dest.join("sparsebak/archive.json").is_file());
    a.ok(&Request::DeleteArchive { uuid: UUID.into() });
    let r = a.call(&Request::ListVolumes);
    assert!(error_text(&r).contains("no archive is open"), "{r:?}");
    a.bye();
    let left: Vec<String> = fs::read_dir(&fx.dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["user-file"]);
    assert_eq!(
        fs::read(fx.outside.join("canary")).unwrap(),
        b"do not touch\n"
    );
    // A read-only agent may not delete.
    let fx = Fixture::new();
    let mut ro = fx.agent(false, &[]);
    let r = ro.call(&Request::DeleteArchive { uuid: UUID.into() });
    assert!(error_text(&r).contains("read-only"), "{r:?}");
    assert!(fx.dest.join("sparsebak/archive.json").is_file());
}

#[test]
fn a_symlinked_volume_dir_is_never_written_through() {
    let fx = Fixture::new();
    let moved = fx.outside.join("vol");
    fs::rename(fx.vol_dir(), &moved).unwrap();
    fs::create_dir(moved.join(".prune-plan-tmp")).unwrap();
    fs::write(moved.join(".prune-plan-tmp/plan"), b"mine").unwrap();
    std::os::unix::fs::symlink(&moved, fx.vol_dir()).unwrap();
    let before = fx.tree();
    let mut a = fx.agent(true, &[]);
    let (p, m, i) = standard_plan();
    let r = a.upload(VOL, &p, &m, &i);
    assert!(
        error_text(&r).contains("not a directory; refusing"),
        "{r:?}"
    );
    let r = a.prune(S3, &[S2]).unwrap();
    assert!(
        error_text(&r).contains("not a directory; refusing"),
        "{r:?}"
    );
    let r = a.call(&Request::Commit {
        vol: VOL.into(),
        session: "S_20260105-000000".into(),
        volume_info: "{}".into(),
    });
    assert!(matches!(r, Response::Error { .. }), "{r:?}");
    a.call(&Request::ListSessions { vol: VOL.into() });
    a.bye();
    assert_eq!(fx.tree(), before);
}
