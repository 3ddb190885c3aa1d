//! prune with tar sessions (docs/FORMAT.md §13.5): tar sessions merged
//! into folder sessions and the other way round, tar into tar, parts of
//! parts; every remaining session restores exactly as before (sha256 of the
//! image it was sent from) after each prune and after a crash at every
//! step; planted symlinks are not moved.

use crate::common::*;
use crate::prune_support::*;
use crate::tarfile_support::*;

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
    // The agent of the killed sparsebak may still hold the archive's lock.
    let out = run_when_unlocked(&h.e, &["verify", VOL]);
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
