//! Resumable sends (docs/FORMAT.md §19), end to end over `internal:` with
//! the real binaries: a send interrupted by the agent or dom0 dying (test
//! hooks abort them as `kill -9` would, at a chosen chunk) is resumed by
//! the next send, which sends only what the destination does not hold yet,
//! and commits exactly the session an uninterrupted send would have: the
//! same chunk files, byte for byte, and the same manifest. Every session
//! restores to the sha256 of its source. tests/suite-resume.sh kills the
//! real processes (transport, agent, dom0) over ssh and qrexec too.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// 8 MiB of incompressible data: 128 chunks of 64 KiB.
const SIZE: u64 = 8 * MIB;
const CHUNKS: u64 = SIZE / CHUNK;

fn world() -> Env {
    let e = Env::new();
    e.init(&[]);
    write_file(&e.img("vol1"), &random_bytes(SIZE, 7));
    e.ok(&["add", "vol1"]);
    e
}

fn send_env(e: &Env, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut a = vec!["send"];
    a.extend_from_slice(args);
    run_sparsebak(&a, &e.meta, env)
}

/// A send interrupted at `point` (a test hook: `SPARSEBAK_AGENT_CRASH_AT`
/// or `SPARSEBAK_TEST_CRASH_AT`) fails, commits nothing, and leaves the
/// destination's `-tmp` directory.
fn interrupted(e: &Env, hook: (&str, &str)) {
    let before = e.sessions("vol1").len();
    let o = send_env(e, &[], &[hook]);
    assert_ne!(o.code, 0, "the send survived {hook:?}: {o:#?}");
    // An agent whose dom0 died sees its pipe close and lets go of the archive.
    let lock = e.archive_dir().join(".lock");
    let free = || {
        sh("flock", &["-n", lock.to_str().unwrap(), "true"])
            .status
            .success()
    };
    let t0 = std::time::Instant::now();
    while !free() {
        assert!(t0.elapsed().as_secs() < 20, "the archive is still locked");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(e.sessions("vol1").len(), before, "a session was committed");
    let tmp_dirs: Vec<_> = std::fs::read_dir(e.vol_archive_dir("vol1"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().ends_with("-tmp"))
        .collect();
    assert_eq!(
        tmp_dirs.len(),
        1,
        "the destination keeps one unfinished session"
    );
}

/// The bytes of chunk data a send's report says crossed the link, and how
/// many chunks it kept from the interrupted session.
fn resumed(out: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("resumed "))
        .unwrap_or_else(|| panic!("no resume report in {out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let sent = words[words.len() - 3].parse().expect("bytes sent");
    let kept = words[2].parse().expect("chunks kept");
    (sent, kept)
}

/// Every file of a committed session but `info.json` (which names the
/// session and its time), with its bytes.
fn session_files(e: &Env, session: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = e.vol_archive_dir("vol1").join(format!("S_{session}"));
    let mut out = BTreeMap::new();
    for f in e.chunk_files("vol1", session) {
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        out.insert(rel, std::fs::read(&f).unwrap());
    }
    out.insert(
        "manifest".into(),
        std::fs::read(dir.join("manifest")).unwrap(),
    );
    out
}

/// The session an uninterrupted send of `img` stores, from a fresh archive.
fn uninterrupted(img: &Path) -> (BTreeMap<String, Vec<u8>>, u64) {
    let r = Env::new();
    r.init(&[]);
    std::fs::copy(img, r.img("vol1")).unwrap();
    r.ok(&["add", "vol1"]);
    r.ok(&["send"]);
    let s = r.session_names("vol1").pop().unwrap();
    let stored = r.sessions("vol1")[0]["stored_bytes"].as_u64().unwrap();
    (session_files(&r, &s), stored)
}

fn restores_equal(e: &Env, sums: &[String]) {
    let names = e.session_names("vol1");
    assert_eq!(names.len(), sums.len());
    for (s, want) in names.iter().zip(sums) {
        let out = format!("out-{s}.img");
        assert_eq!(&e.receive_sha("vol1", Some(s), &out), want, "session {s}");
        std::fs::remove_file(e.path(&out)).unwrap();
    }
    e.verify_ok("vol1");
}

#[test]
fn a_send_killed_at_80_percent_sends_at_most_a_quarter_again_and_stores_the_same_session() {
    let e = world();
    let at = CHUNKS * 8 / 10;
    interrupted(&e, ("SPARSEBAK_AGENT_CRASH_AT", &format!("chunk-{at}")));
    // Pieces of 7 records: the list crosses many ResumeCheck answers.
    let out = send_env(&e, &[], &[("SPARSEBAK_AGENT_RESUME_PIECE", "7")]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("resuming the interrupted session"),
        "{}",
        out.stderr
    );
    let (sent, kept) = resumed(&out.stdout);
    let (want, stored) = uninterrupted(&e.img("vol1"));
    assert!(kept >= at - 1, "kept only {kept} of {at} chunks");
    assert!(
        sent * 4 <= stored,
        "the resumed send sent {sent} of {stored} bytes (more than a quarter)"
    );
    let s = e.session_names("vol1").pop().unwrap();
    assert_eq!(
        session_files(&e, &s),
        want,
        "not the session an uninterrupted send stores"
    );
    assert_eq!(e.sessions("vol1")[0]["stored_bytes"].as_u64(), Some(stored));
    restores_equal(&e, &[sha256_file(&e.img("vol1"))]);
    assert!(
        std::fs::read_dir(e.meta.join("volumes/vol1"))
            .unwrap()
            .flatten()
            .all(|d| !d.file_name().to_string_lossy().ends_with("-tmp")),
        "a local -tmp directory is left"
    );
}

#[test]
fn dom0_killed_then_data_changed_resends_what_changed_and_restores_the_new_data() {
    let e = world();
    interrupted(
        &e,
        (
            "SPARSEBAK_TEST_CRASH_AT",
            &format!("send-chunk-{}", CHUNKS * 4 / 10),
        ),
    );
    // Chunks the destination holds change before the next send: their new
    // bytes must be sent, not the old ones kept.
    write_at(&e.img("vol1"), 3 * CHUNK + 5, &random_bytes(2 * CHUNK, 99));
    write_at(&e.img("vol1"), 20 * CHUNK, &vec![0u8; CHUNK as usize]);
    let out = e.ok(&["send"]);
    let (sent, kept) = resumed(&out);
    let (want, stored) = uninterrupted(&e.img("vol1"));
    // dom0's unsent buffers died with it: the agent got what was flushed.
    assert!(kept > 0, "kept nothing");
    assert!(sent < stored, "sent {sent} of {stored}");
    let s = e.session_names("vol1").pop().unwrap();
    assert_eq!(session_files(&e, &s), want);
    restores_equal(&e, &[sha256_file(&e.img("vol1"))]);
}

#[test]
fn an_incremental_send_interrupted_twice_resumes_and_every_session_restores() {
    let e = world();
    e.ok(&["send"]);
    let mut sums = vec![sha256_file(&e.img("vol1"))];
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_at(&e.img("vol1"), 0, &random_bytes(SIZE / 2, 11));
    // dom0 killed at 40 %, then the agent (of the resumed send) at 80 % of
    // the change.
    let half = CHUNKS / 2;
    interrupted(
        &e,
        (
            "SPARSEBAK_TEST_CRASH_AT",
            &format!("send-chunk-{}", half * 4 / 10),
        ),
    );
    interrupted(
        &e,
        (
            "SPARSEBAK_AGENT_CRASH_AT",
            &format!("chunk-{}", half * 8 / 10),
        ),
    );
    let out = e.ok(&["send"]);
    let (sent, _) = resumed(&out);
    let stored = e.sessions("vol1")[1]["stored_bytes"].as_u64().unwrap();
    assert!(sent * 4 <= stored, "sent {sent} of {stored}");
    sums.push(sha256_file(&e.img("vol1")));
    restores_equal(&e, &sums);
}

#[test]
fn damaged_files_on_the_destination_are_sent_again() {
    let e = world();
    interrupted(&e, ("SPARSEBAK_AGENT_CRASH_AT", "chunk-40"));
    // Damage two files the destination holds (as a power loss could).
    let tmp = std::fs::read_dir(e.vol_archive_dir("vol1"))
        .unwrap()
        .flatten()
        .find(|d| d.file_name().to_string_lossy().ends_with("-tmp"))
        .unwrap()
        .path();
    let f1 = tmp.join("000000000/x0000000000030000");
    let f2 = tmp.join("000000000/x0000000000050000");
    std::fs::write(&f1, b"garbage").unwrap();
    write_at(&f2, 100, b"flipped");
    let out = e.ok(&["send"]);
    let (sent, kept) = resumed(&out);
    assert_eq!(kept, 38, "the two damaged files were kept");
    assert!(sent > 0);
    let (want, _) = uninterrupted(&e.img("vol1"));
    let s = e.session_names("vol1").pop().unwrap();
    assert_eq!(session_files(&e, &s), want);
    restores_equal(&e, &[sha256_file(&e.img("vol1"))]);
}

#[test]
fn an_old_agent_a_tar_session_and_no_resume_send_everything_again_with_a_note() {
    let e = world();
    let sum = sha256_file(&e.img("vol1"));
    interrupted(&e, ("SPARSEBAK_AGENT_CRASH_AT", "chunk-60"));
    let o = send_env(
        &e,
        &[],
        &[
            ("SPARSEBAK_AGENT_NO_FEATURES", "resume"),
            ("SPARSEBAK_AGENT_CRASH_AT", "chunk-70"),
        ],
    );
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("cannot resume the interrupted session")
            && o.stderr.contains("sending everything again"),
        "{}",
        o.stderr
    );
    let o = e.ok(&["send", "--tarfile"]);
    assert!(!o.contains("resumed "), "{o}");
    restores_equal(&e, std::slice::from_ref(&sum));

    let e = world();
    interrupted(&e, ("SPARSEBAK_AGENT_CRASH_AT", "chunk-60"));
    let o = e.run(&["send", "--tarfile"]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(
        o.stderr.contains("a --tarfile session cannot resume"),
        "{}",
        o.stderr
    );
    restores_equal(&e, std::slice::from_ref(&sum));

    let e = world();
    interrupted(&e, ("SPARSEBAK_AGENT_CRASH_AT", "chunk-60"));
    let o = e.run(&["send", "--no-resume"]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(
        o.stderr
            .contains("not resuming its interrupted send (--no-resume)"),
        "{}",
        o.stderr
    );
    assert!(!o.stdout.contains("resumed "), "{}", o.stdout);
    restores_equal(&e, &[sum]);
}

/// Format 2 seals every chunk with a random nonce, so a chunk sealed again
/// never has the held file's hash: the interrupted upload's own manifest
/// (kept by dom0) recognises the held files, and the session records them.
#[test]
fn an_encrypted_archive_resumes_from_what_dom0_sent() {
    let fast = ("SPARSEBAK_TEST_FAST_KDF", "1");
    let e = Env::new();
    let pass = e.path("pass");
    std::fs::write(&pass, "resume me\n").unwrap();
    let [d, s] = Env::dest_args(&e.dest);
    let src = format!("--source=dir:{}", e.src.display());
    let p = format!("--passphrase-file={}", pass.display());
    let o = run_sparsebak(&["arch-init", &d, &s, &src, &p], &e.meta, &[fast]);
    assert!(o.code == 0 && o.stdout.contains("encrypted;"), "{o:#?}");
    write_file(&e.img("vol1"), &random_bytes(SIZE, 8));
    assert_eq!(run_sparsebak(&["add", "vol1"], &e.meta, &[fast]).code, 0);
    let at = CHUNKS * 8 / 10;
    let hook = format!("chunk-{at}");
    let o = run_sparsebak(
        &["send"],
        &e.meta,
        &[fast, ("SPARSEBAK_AGENT_CRASH_AT", &hook)],
    );
    assert_ne!(o.code, 0, "{o:#?}");
    let o = run_sparsebak(&["send"], &e.meta, &[fast]);
    assert_eq!(o.code, 0, "{o:#?}");
    let (sent, kept) = resumed(&o.stdout);
    let stored = e.sessions("vol1")[0]["stored_bytes"].as_u64().unwrap();
    assert!(kept >= at - 1, "kept only {kept} of {at}: {}", o.stdout);
    assert!(sent * 4 <= stored, "sent {sent} of {stored}");
    let out = e.path("out.img");
    let save = format!("--save-to={}", out.display());
    let o = run_sparsebak(&["receive", "vol1", &save], &e.meta, &[fast]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(sha256_file(&out), sha256_file(&e.img("vol1")));
    let o = run_sparsebak(&["verify", "vol1"], &e.meta, &[fast]);
    assert!(
        o.code == 0 && o.stdout.contains("Verified vol1 session"),
        "{o:#?}"
    );
}
