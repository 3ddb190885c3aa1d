//! `arch-recover`: after the whole meta dir is lost, the local metadata is
//! rebuilt from the archive; every session of every volume restores to the
//! bytes it was sent from, verify passes, and the chain continues with a
//! new send (docs/FORMAT.md §15).

use crate::common::*;
use crate::recover_support::*;

#[test]
fn a_lost_meta_dir_is_recovered_and_every_session_restores() {
    let w = World::new();
    let e = &w.e;
    let before: Vec<_> = [VA, VB].iter().map(|v| e.sessions(v)).collect();
    assert_eq!(before[0].len(), 4, "vm-a: 5 sends, one session pruned");
    assert!(
        before[0].iter().any(|s| s["format"] == "tar"),
        "a tar session"
    );
    std::fs::remove_dir_all(&e.meta).unwrap();

    // Tiny pieces: every manifest crosses the pipe in many ReadMeta replies.
    let o = w.recover_into(&e.meta, &[("SPARSEBAK_AGENT_META_PIECE", "1000")]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(
        o.stdout.contains("Volume vm-a: fetching 4 session(s)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Volume vm-b: fetching 5 session(s)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("2 volume(s), 9 session(s)"),
        "{}",
        o.stdout
    );
    assert!(!e.meta.join(".recover").exists(), "staging dir left behind");

    // The recovered metadata is what dom0 had.
    for (v, had) in [VA, VB].iter().zip(&before) {
        assert_eq!(&e.sessions(v), had, "list --json of {v} after recovery");
        assert_eq!(e.session_names(v), w.sessions_of(v));
    }
    for v in [VA, VB] {
        w.restores_all(&e.meta, v);
        for s in w.sessions_of(v) {
            let out = e.ok(&["verify", v, &format!("--session={s}")]);
            assert!(out.contains(&format!("Verified {v} session {s}")), "{out}");
        }
    }

    let rows = e.ok(&["list"]);
    for v in [VA, VB] {
        let row = rows.lines().find(|l| l.contains(v)).unwrap_or("");
        assert!(row.ends_with("(recovered: `add` it to send)"), "{rows}");
    }

    // A refused rerun changes nothing.
    let o = w.recover_into(&e.meta, &[]);
    o.expect(1, &["already configured", "never replaces local metadata"]);

    // Prune works on recovered volumes before their source is confirmed.
    let mut w = w;
    let oldest = w.sessions_of(VB)[0].clone();
    w.e.ok(&["-u", "prune", VB, &format!("--session={oldest}")]);
    w.sha.remove(&(VB.to_string(), oldest));
    assert_eq!(w.e.session_names(VB), w.sessions_of(VB));
    w.restores_all(&w.e.meta, VB);
    let e = &w.e;

    // Sending needs the source confirmed first.
    e.run(&["send", "-u", VA])
        .expect(1, &["volume vm-a was recovered", "sparsebak add vm-a"]);
    e.ok(&["add", VA]);
    e.ok(&["add", VB]);
    let rows = e.ok(&["list"]);
    assert!(!rows.contains("recovered"), "{rows}");
    write_at(&e.img(VA), 50_000, &random_bytes(100_000, 77));
    set_len(&e.img(VB), 2 * MIB);
    e.ok(&["send", "-u"]);
    for v in [VA, VB] {
        let s = e.sessions(v);
        let (last, prev) = (&s[s.len() - 1], &s[s.len() - 2]);
        assert_eq!(last["previous"], prev["name"], "{v}: the chain continues");
        assert!(last["sequence"].as_u64() > prev["sequence"].as_u64());
        let got = e.receive_sha(v, None, &format!("after-{v}"));
        assert_eq!(got, sha256_file(&e.img(v)), "{v}: new session restores");
        e.verify_ok(v);
    }
}

#[test]
fn an_interrupted_recovery_is_run_again() {
    let w = World::with_steps(&steps()[..2], false);
    let e = &w.e;
    std::fs::remove_dir_all(&e.meta).unwrap();
    // What a run killed after renaming volumes/ but before the config leaves.
    let o = w.recover_into(&e.meta, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    std::fs::remove_file(e.meta.join("archive.json")).unwrap();
    std::fs::create_dir(e.meta.join(".recover")).unwrap();
    write_file(&e.meta.join("volumes/vm-a/junk"), b"half");
    let o = w.recover_into(&e.meta, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(!e.meta.join("volumes/vm-a/junk").exists());
    w.restores_all(&e.meta, VA);
    w.restores_all(&e.meta, VB);

    // Volume metadata without a configuration and without the marker is
    // not ours to replace.
    std::fs::remove_file(e.meta.join("archive.json")).unwrap();
    let o = w.recover_into(&e.meta, &[]);
    o.expect(1, &["holds volume metadata but no archive configuration"]);
    assert!(e.meta.join("volumes/vm-a/volume.json").exists());
}

#[test]
fn an_unfinished_prune_on_the_destination_is_completed_first() {
    let w = World::with_steps(&steps()[..3], false);
    let e = &w.e;
    let names = e.session_names(VA);
    // The agent dies right after committing the prune plan: nothing moved yet.
    let o = run_sparsebak(
        &["-u", "prune", VA, &format!("--session={}", names[0])],
        &e.meta,
        &[("SPARSEBAK_AGENT_CRASH_AT", "plan")],
    );
    assert_ne!(o.code, 0, "{o:#?}");
    assert!(e.vol_archive_dir(VA).join(".prune-plan").exists());
    std::fs::remove_dir_all(&e.meta).unwrap();
    let o = w.recover_into(&e.meta, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(!e.vol_archive_dir(VA).join(".prune-plan").exists());
    assert_eq!(
        e.session_names(VA),
        names[1..].to_vec(),
        "the prune completed"
    );
    let mut w = w;
    w.sha.remove(&(VA.to_string(), names[0].clone()));
    w.restores_all(&w.e.meta, VA);
    w.restores_all(&w.e.meta, VB);
    w.e.verify_ok(VA);
}

#[test]
fn an_agent_that_is_too_old_or_a_missing_archive_is_a_clear_error() {
    let e = Env::new();
    let [d, s] = Env::dest_args(&e.dest);
    let o = run_sparsebak(&["arch-recover", &d, &s], &e.meta, &[]);
    o.expect(1, &["no sparsebak archive at"]);
    assert!(!e.meta.join("archive.json").exists());
    let o = run_sparsebak(&["arch-recover"], &e.meta, &[]);
    o.expect(1, &["arch-recover needs --dest"]);

    let w = World::with_steps(&steps()[..1], false);
    std::fs::remove_dir_all(&w.e.meta).unwrap();
    let o = w.recover_into(&w.e.meta, &[("SPARSEBAK_AGENT_NO_FEATURES", "1")]);
    o.expect(1, &["is too old", "install sparsebak-agent"]);
    assert!(!w.e.meta.join("archive.json").exists());
    assert!(
        !w.e.meta.join(".recover").exists(),
        "a failed run leaves no staging dir"
    );
}
