//! delete and arch-delete: names that could escape the archive are refused
//! before anything is touched; delete removes a volume's archive data, local
//! metadata (change map included) and configuration entry, even with an
//! interrupted prune pending; arch-delete always asks at a terminal (even
//! with -u), removes the archive and every local trace but a copy of the
//! configuration, and leaves room for a new arch-init.

use crate::common::*;
use crate::prune_support::*;

/// Two volumes with two sessions each.
fn two_volumes() -> Hist {
    let h = Hist::new(&standard_steps()[..2]);
    let e = &h.e;
    write_file(&e.img("other"), &realistic_bytes(400_000, 4));
    e.ok(&["add", "other"]);
    e.ok(&["send", "-u", "other"]);
    h
}

#[test]
fn names_that_could_escape_are_refused() {
    let h = two_volumes();
    let before = h.state();
    for name in [
        "..",
        ".",
        "../other",
        "/etc",
        "vm-data/../other",
        "a b",
        "-rf",
        "vm-data.tick",
        "",
    ] {
        h.e.run(&["delete", "-u", "--", name])
            .expect(1, &["invalid volume name"]);
        h.e.run(&["prune", "-u", "--keep-last=1", "--", name])
            .expect(1, &["invalid volume name"]);
    }
    assert_eq!(h.state(), before, "a refused delete changed something");
}

#[test]
fn delete_removes_data_metadata_change_map_and_config_entry() {
    let h = two_volumes();
    let e = &h.e;
    let other_sha = e.receive_sha("other", None, "other-before");
    // A change map lives in the volume's local metadata dir.
    let vmeta = e.meta.join("volumes").join(VOL);
    write_file(&vmeta.join("deltamap"), b"map");
    e.run(&["delete", VOL])
        .expect(1, &["no terminal to ask on; pass -u"]);
    assert!(e.vol_archive_dir(VOL).is_dir() && vmeta.is_dir());
    let out = e.ok(&["delete", VOL, "-u"]);
    assert!(out.contains("Volume vm-data deleted"), "{out}");
    assert!(!e.vol_archive_dir(VOL).exists());
    assert!(!vmeta.exists());
    assert!(e.config()["volumes"].get(VOL).is_none());
    assert_eq!(e.receive_sha("other", None, "other-after"), other_sha);
    e.verify_ok("other");
}

#[test]
fn delete_works_with_an_interrupted_prune_of_that_volume() {
    let h = two_volumes();
    let e = &h.e;
    let names = h.names();
    let out = run_env(
        e,
        &["prune", VOL, "-u", &format!("--session={}", names[0])],
        &[("SPARSEBAK_AGENT_CRASH_AT", "plan")],
    );
    assert_ne!(out.code, 0, "{out:#?}");
    let out = e.run(&["delete", VOL, "-u"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.contains("Completing"), "{}", out.stderr);
    assert!(!e.vol_archive_dir(VOL).exists());
    assert!(!e.meta.join("volumes").join(VOL).exists());
    e.verify_ok("other");
}

#[test]
fn arch_delete_refuses_without_a_terminal_even_with_u() {
    let h = two_volumes();
    let before = h.state();
    for args in [vec!["arch-delete"], vec!["arch-delete", "-u"]] {
        h.e.run(&args).expect(
            1,
            &["arch-delete asks for confirmation at a terminal, even with -u, and there is none; nothing was deleted"],
        );
    }
    assert_eq!(h.state(), before);
}

#[test]
fn arch_delete_at_a_terminal() {
    let h = two_volumes();
    let e = &h.e;
    let uuid = e.config()["uuid"].as_str().unwrap().to_string();
    let before = h.state();
    fn assert_has(out: &Out, code: i32, text: &str) {
        assert_eq!(out.code, code, "{out:#?}");
        assert!(out.stdout.contains(text), "{}", out.stdout);
    }
    // Anything but the uuid or "yes" cancels, -u or not.
    for answer in ["no\n", "y\n", "\n", "YES please\n"] {
        let out = run_tty(e, &["arch-delete", "-u"], answer);
        assert_has(&out, 1, "arch-delete cancelled; nothing was deleted");
    }
    assert_eq!(h.state(), before);
    let out = run_tty(e, &["arch-delete"], &format!("{uuid}\n"));
    assert_has(&out, 0, &format!("Archive {uuid} deleted"));
    assert!(!e.archive_dir().exists());
    assert!(e.dest.is_dir(), "the destination directory itself stays");
    assert_eq!(std::fs::read_dir(&e.dest).unwrap().count(), 0);
    assert!(!e.meta.join("volumes").exists());
    assert!(!e.meta.join("archive.json").exists());
    let kept = e.meta.join(format!("archive.json.deleted-{uuid}"));
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(kept).unwrap()).unwrap();
    assert!(kept["volumes"].get(VOL).is_some());
    e.run(&["list"])
        .expect(1, &["no sparsebak archive is configured"]);
    // A new archive can be made in the same place, and used.
    e.init(&[]);
    e.ok(&["add", VOL]);
    e.ok(&["send", "-u"]);
    assert_eq!(
        e.receive_sha(VOL, None, "new-archive"),
        sha256_file(&e.img(VOL))
    );
}

#[test]
fn arch_delete_of_an_archive_already_gone_or_replaced() {
    // Gone (an earlier arch-delete died after the destination step): the
    // local state is still removed.
    let h = two_volumes();
    let e = &h.e;
    std::fs::remove_dir_all(e.archive_dir()).unwrap();
    let out = run_tty(e, &["arch-delete"], "yes\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("there is no archive at"),
        "{}",
        out.stdout
    );
    assert!(!e.meta.join("volumes").exists() && !e.meta.join("archive.json").exists());
    // Replaced by another archive: refused, nothing deleted.
    let h = two_volumes();
    let e = &h.e;
    let hp = e.archive_dir().join("archive.json");
    let mut header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&hp).unwrap()).unwrap();
    header["uuid"] = "someone-elses-archive".into();
    std::fs::write(&hp, serde_json::to_vec(&header).unwrap()).unwrap();
    let before = h.state();
    let out = run_tty(e, &["arch-delete"], "yes\n");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stdout.contains("has uuid someone-elses-archive"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("refusing to delete it"),
        "{}",
        out.stdout
    );
    assert_eq!(h.state(), before);
}
