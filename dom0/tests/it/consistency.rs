//! The consistency check (docs/FORMAT.md §17) through the real binaries:
//! `sparsebak` and `sparsebak-agent` over the `internal:` transport.

use crate::common::*;

/// An archive with volume `v` and two sessions; what each held, and names.
fn two_sessions(e: &Env) -> (Vec<String>, Vec<String>) {
    e.init(&[]);
    let img = e.img("v");
    write_file(&img, &text_bytes(1 << 20, 1));
    e.ok(&["add", "v"]);
    let mut shas = Vec::new();
    e.ok(&["send", "-u"]);
    shas.push(sha256_file(&img));
    write_at(&img, 300_000, b"second session");
    e.ok(&["send", "-u"]);
    shas.push(sha256_file(&img));
    (shas, e.session_names("v"))
}

#[test]
fn a_lost_newest_session_is_refused_and_what_is_left_can_be_read_on_request() {
    let e = Env::new();
    let (shas, names) = two_sessions(&e);
    let newest = e.vol_archive_dir("v").join(format!("S_{}", names[1]));
    std::fs::remove_dir_all(newest).unwrap();
    let named = format!("volume v, session {}: missing on the destination", names[1]);
    e.run(&["send", "-u"])
        .expect(1, &[&named, "dom0's newest session", "Nothing was written"]);
    let target = e.path("out.img");
    let save = format!("--save-to={}", target.display());
    let first = format!("--session={}", names[0]);
    e.run(&["receive", "v", &save, &first, "-u"])
        .expect(1, &[&named, "--allow-inconsistent"]);
    assert!(!target.exists(), "nothing written to the target");
    e.run(&["verify", "v"]).expect(1, &[&named]);
    e.run(&["prune", "v", &first, "-u"]).expect(1, &[&named]);
    let o = e.run(&["receive", "v", &save, &first, "--allow-inconsistent", "-u"]);
    o.expect(0, &[]);
    assert!(o.stderr.contains(&named), "warned: {o:#?}");
    assert_eq!(sha256_file(&target), shas[0]);
    // The lost session: its chunks are named missing, exit 3.
    e.run(&["verify", "v", "--allow-inconsistent"])
        .expect(3, &["missing"]);
}

#[test]
fn an_agent_too_old_for_the_check_is_named_and_nothing_is_done() {
    let e = Env::new();
    let (_, names) = two_sessions(&e);
    let old = [("SPARSEBAK_AGENT_NO_FEATURES", "1")];
    write_at(&e.img("v"), 0, b"third");
    let o = run_sparsebak(&["send", "-u"], &e.meta, &old);
    o.expect(
        1,
        &["is too old", "session digests", "install sparsebak-agent"],
    );
    let o = run_sparsebak(&["verify", "v"], &e.meta, &old);
    o.expect(1, &["is too old"]);
    assert_eq!(e.session_names("v"), names);
}

#[test]
fn arch_check_reports_each_problem_by_volume_session_and_chunk_and_exits_3() {
    let e = Env::new();
    let (_, names) = two_sessions(&e);
    let out = e.ok(&["arch-check", "--data"]);
    assert!(
        out.contains("Checked 1 volumes, 2 sessions, 2 manifests, "),
        "{out}"
    );
    assert!(out.contains("no problems"), "{out}");
    assert!(
        out.contains("newest state dom0 wrote: generation 2."),
        "{out}"
    );

    let files = e.chunk_files("v", &names[0]);
    let victim = &files[files.len() / 2];
    let mut b = std::fs::read(victim).unwrap();
    b[20] ^= 4;
    std::fs::write(victim, b).unwrap();
    let chunk = victim.file_name().unwrap().to_string_lossy().into_owned();
    e.ok(&["arch-check"]);
    let line = format!("problem: volume v, session {}, chunk {chunk}: ", names[0]);
    e.run(&["arch-check", "--data"])
        .expect(3, &[&line, "1 problem"]);
    let o = e.run(&["arch-check", "--data", "--json"]);
    assert_eq!(o.code, 3, "{o:#?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["problem_count"], 1);
    assert_eq!(v["archive_generation"], 2);
    let p = &v["problems"][0];
    assert_eq!(p["kind"], "altered");
    assert_eq!(p["volume"], "v");
    assert_eq!(p["session"], format!("S_{}", names[0]));
    assert_eq!(p["chunk"], chunk);
}

/// Format 1's bad input for the files the check reads: a flipped byte in
/// volume.json or in an info.json, an archive.json that is not the one
/// dom0 configured. Each is named; nothing is sent.
#[test]
fn flipped_metadata_files_are_named_and_nothing_is_sent() {
    let e = Env::new();
    let (_, names) = two_sessions(&e);
    let flip = |p: &std::path::Path, at: usize| {
        let mut b = std::fs::read(p).unwrap();
        b[at] ^= 1;
        std::fs::write(p, b).unwrap();
    };
    write_at(&e.img("v"), 9, b"more");
    let vj = e.vol_archive_dir("v").join("volume.json");
    flip(&vj, 12);
    e.run(&["send", "-u"]).expect(
        1,
        &["volume v: volume.json on the destination differs from dom0's"],
    );
    flip(&vj, 12);
    let info = e
        .vol_archive_dir("v")
        .join(format!("S_{}", names[0]))
        .join("info.json");
    flip(&info, 30);
    let named = format!(
        "volume v, session {}: info.json on the destination differs",
        names[0]
    );
    e.run(&["send", "-u"]).expect(1, &[&named]);
    e.run(&["arch-check"]).expect(3, &[&named]);
    flip(&info, 30);
    let header = e.archive_dir().join("archive.json");
    let text = std::fs::read_to_string(&header).unwrap();
    let uuid = e.config()["uuid"].as_str().unwrap().to_string();
    let other = format!("{}0", &uuid[..uuid.len() - 1]);
    let other = if other == uuid {
        format!("{}1", &uuid[..uuid.len() - 1])
    } else {
        other
    };
    std::fs::write(&header, text.replace(&uuid, &other)).unwrap();
    e.run(&["send", "-u"]).expect(1, &["wrong disk or path?"]);
    e.run(&["arch-check"]).expect(1, &["wrong disk or path?"]);
    std::fs::write(&header, text).unwrap();
    assert_eq!(e.session_names("v"), names, "nothing was sent");
    e.ok(&["send", "-u"]);
    assert_eq!(e.session_names("v").len(), 3);
}
