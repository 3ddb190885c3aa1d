//! prune end to end with the real binaries: every remaining session
//! restores exactly what it restored before (sha256 of the restored volume
//! against the image it was sent from), whatever the selection; the newest
//! session is never pruned; keep rules; confirmation.

use crate::common::*;
use crate::prune_support::*;

fn prune(h: &Hist, args: &[&str]) -> Out {
    let mut a = vec!["prune", VOL];
    a.extend_from_slice(args);
    h.e.run(&a)
}

fn session(s: &str) -> String {
    format!("--session={s}")
}

#[test]
fn one_session_merges_into_the_next_and_everything_restores_the_same() {
    let h = Hist::new(&standard_steps());
    let names = h.names();
    h.check(&names);
    // Session 1 (overwrites) into session 2 (zeros).
    let out = prune(&h, &[&session(&names[1])]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "pruned 1 session(s) ({}) into {}",
            names[1], names[2]
        )),
        "{}",
        out.stdout
    );
    let left = h.without(&names, 1..=1);
    h.check(&left);
    assert!(!h
        .e
        .vol_archive_dir(VOL)
        .join(format!("S_{}", names[1]))
        .exists());
    assert!(!h
        .e
        .meta
        .join("volumes")
        .join(VOL)
        .join(format!("S_{}", names[1]))
        .exists());
    // The target now names the pruned session's predecessor.
    let s = h.e.sessions(VOL);
    assert_eq!(s[1]["previous"], format!("S_{}", names[0]));
    assert_eq!(s[1]["sequence"], 2, "sequence is not renumbered");
    // list shows the chain in order, with sizes.
    let list = h.e.ok(&["list", VOL]);
    let shown: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(shown, left.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(list.contains("size"), "{list}");
}

#[test]
fn ranges_and_all_before() {
    let h = Hist::new(&standard_steps());
    let names = h.names();
    // An exact range: 1 and 2 into 3.
    let out = prune(&h, &["-u", &session(&format!("{},{}", names[1], names[2]))]);
    assert_eq!(out.code, 0, "{out:#?}");
    let left = h.without(&names, 1..=2);
    h.check(&left);
    // A range starting before the first session: 0 and 3 into 4.
    let out = prune(
        &h,
        &["-u", &session(&format!("19991231-000000,{}", names[3]))],
    );
    assert_eq!(out.code, 0, "{out:#?}");
    let left = h.without(&names, 0..=3);
    h.check(&left);
    // Nothing in range, and a second value earlier than the first.
    let out = prune(&h, &[&session("20000101-000000,20000102-000000")]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout
            .contains("no sessions to prune in this selection"),
        "{}",
        out.stdout
    );
    prune(&h, &[&session(&format!("{},{}", names[5], names[4]))]).expect(
        1,
        &["the second date-time of --session must be later than the first"],
    );
    h.check(&left);

    let h = Hist::new(&standard_steps());
    let names = h.names();
    let out = prune(&h, &["--all-before", "-u", &session(&names[3])]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains(&format!("into {}", names[3])),
        "{}",
        out.stdout
    );
    let left = h.without(&names, 0..=2);
    h.check(&left);
    // Before the (new) first session: nothing.
    let out = prune(&h, &["--all-before", &session(&names[3])]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&left);
}

#[test]
fn the_newest_session_is_never_pruned() {
    let h = Hist::new(&standard_steps()[..3]);
    let names = h.names();
    let before = h.state();
    let newest = &names[2];
    let want = format!("cannot prune the newest session {newest} of volume {VOL}");
    for args in [
        vec![session(newest)],
        vec![session(&format!("{},{newest}", names[0]))],
        vec![session(&format!("{},29991231-000000", names[1]))],
        vec!["--all-before".into(), session(newest)],
        vec!["--all-before".into(), session("29991231-000000")],
        vec![session("29991231-000000")],
    ] {
        let mut a: Vec<&str> = vec!["-u"];
        a.extend(args.iter().map(String::as_str));
        prune(&h, &a).expect(1, &[&want]);
    }
    assert_eq!(h.state(), before, "a refused prune changed something");
    // With a single session there is nothing to prune.
    let one = Hist::new(&standard_steps()[..1]);
    let out = prune(&one, &[&session(&one.names()[0])]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("no extra sessions to prune"),
        "{}",
        out.stdout
    );
}

#[test]
fn keep_rules_for_timers() {
    let h = Hist::new(&standard_steps());
    let names = h.names();
    // Every session is from today: a day's window keeps them all.
    let out = prune(&h, &["-u", "--keep-days=1"]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names);
    let out = prune(&h, &["-u", "--keep-last=3"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains(&format!(
            "pruned 3 session(s) ({}, {}, {})",
            names[0], names[1], names[2]
        )),
        "{}",
        out.stdout
    );
    h.check(&names[3..]);
    // Both rules: whichever keeps more wins; --keep-days=0 alone keeps only
    // the newest. (Sends within one second get names a second apart, so
    // the newest names may lie in the future: wait until they do not.)
    wait_until_past(&names[5]);
    let out = prune(&h, &["-u", "--keep-last=2", "--keep-days=0"]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[4..]);
    let out = prune(&h, &["-u", "--keep-days=0"]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[5..]);
    // Rules that make no sense are usage errors of prune.
    prune(&h, &["--keep-last=0"]).expect(1, &["--keep-last=0 would prune the newest session"]);
    prune(&h, &["--keep-last=2", &session(&names[5])]).expect(1, &["drop --session"]);
    prune(&h, &[]).expect(1, &["prune needs --session"]);
    prune(&h, &["--all-before"]).expect(1, &["prune needs --session"]);
    prune(&h, &[&session("2026-01-01")]).expect(1, &["expected YYYYMMDD-HHMMSS"]);
    // Options belong to their command: elsewhere they are usage errors.
    h.e.run(&["send", "--keep-last=2"])
        .expect(2, &["unexpected argument '--keep-last'"]);
    h.e.run(&["list", "--all-before"])
        .expect(2, &["unexpected argument '--all-before'"]);
}

/// Sleep until the UTC clock is past session time `ts`.
fn wait_until_past(ts: &str) {
    for _ in 0..100 {
        if sh_ok("date", &["-u", "+%Y%m%d-%H%M%S"]).as_str() > ts {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the clock never passed {ts}");
}

#[test]
fn several_sessions_need_a_yes() {
    let h = Hist::new(&standard_steps()[..4]);
    let names = h.names();
    let before = h.state();
    // No terminal and no -u: refused, nothing changed.
    prune(&h, &[&session(&format!("{},{}", names[0], names[1]))]).expect(
        1,
        &[
            "Prune 2 sessions of volume vm-data",
            "no terminal to ask on; pass -u",
        ],
    );
    assert_eq!(h.state(), before);
    // At a terminal, "n" cancels and "y" goes ahead.
    let range = session(&format!("{},{}", names[0], names[1]));
    let out = run_tty(&h.e, &["prune", VOL, &range], "n\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("prune cancelled"), "{}", out.stdout);
    assert_eq!(h.state(), before);
    let out = run_tty(&h.e, &["prune", VOL, &range], "y\n");
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[2..]);
    // A single session is pruned without asking.
    let out = prune(&h, &[&session(&names[2])]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[3..]);
}

#[test]
fn shrunk_volume_between_the_pruned_sessions_and_the_target() {
    // 0: 2 MiB; 1: overwrite; 2: zeros; 3: shrink to 900007; 4: regrow with
    // data; 5: edits.
    let h = Hist::new(&standard_steps());
    let names = h.names();
    // Big sessions into the shrunk one: their chunks beyond its size are
    // dropped, and no chunk file past its end is left in the target.
    let out = prune(&h, &["-u", &session(&format!("{},{}", names[1], names[2]))]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&h.without(&names, 1..=2));
    let target = &names[3];
    for f in h.e.chunk_files(VOL, target) {
        assert!(
            chunk_addr(&f) < 900_007,
            "{} lies past the target's size",
            f.display()
        );
    }
    // The shrunk session into the regrown one: the regrown range must still
    // read as zeros where nothing new was written.
    let out = prune(&h, &[&session(target)]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&[names[0].clone(), names[4].clone(), names[5].clone()]);
    // And the full first session into the regrown one.
    let out = prune(&h, &[&session(&names[0])]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[4..]);
}

#[test]
fn all_volumes_or_the_named_ones() {
    let h = Hist::new(&standard_steps()[..3]);
    let e = &h.e;
    write_file(&e.img("other"), &realistic_bytes(500_000, 9));
    e.ok(&["add", "other"]);
    e.ok(&["send", "-u", "other"]);
    write_at(&e.img("other"), 0, &random_bytes(1000, 10));
    e.ok(&["send", "-u", "other"]);
    let other = e.session_names("other");
    let other_sha = e.receive_sha("other", None, "other-latest");
    let names = h.names();
    // Named: only vm-data.
    let out = e.run(&["prune", "-u", VOL, "--keep-last=2"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(e.session_names("other"), other);
    h.check(&names[1..]);
    // All enabled volumes.
    let out = e.run(&["prune", "-u", "--keep-last=1"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(e.session_names("other"), other[1..]);
    assert_eq!(e.receive_sha("other", None, "other-after"), other_sha);
    h.check(&names[2..]);
    e.run(&["prune", "-u", "--keep-last=1", "nope"])
        .expect(1, &["volume nope is not configured"]);
    e.run(&["prune", "-u", "--keep-last=1", "../x"])
        .expect(1, &["invalid volume name"]);
}
