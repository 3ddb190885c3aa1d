//! Damaged archives: chunk files truncated, corrupted or missing. `verify`
//! exits 3 and names every bad chunk with its session; `receive` exits 1
//! naming the chunk and leaves no output behind. Repairing the file makes
//! the archive whole again.

use crate::common::*;
use std::path::PathBuf;

/// A volume with two sessions; returns the env and the second session's name.
fn archive() -> (Env, String, String) {
    let e = Env::new();
    e.init(&[]);
    write_file(&e.img("vm-priv"), &realistic_bytes(4 * MIB + 777, 40));
    e.ok(&["add", "vm-priv"]);
    e.ok(&["send"]);
    write_at(&e.img("vm-priv"), 2 * MIB + 5, &random_bytes(5 * CHUNK, 41));
    e.ok(&["send"]);
    let n = e.session_names("vm-priv");
    (e, n[0].clone(), n[1].clone())
}

/// Damage `victim` with `how`, check verify and receive, repair, re-verify.
fn check_damage(e: &Env, session: &str, victim: PathBuf, damage: fn(&PathBuf), why: &str) {
    let good = std::fs::read(&victim).unwrap();
    damage(&victim);
    let chunk = format!(
        "chunk 0x{:x} of vm-priv from S_{session}",
        chunk_addr(&victim)
    );
    let v = e.run(&["verify", "vm-priv"]);
    v.expect(
        3,
        &[
            &format!("sparsebak: damaged: {chunk}: {why}"),
            "FAILED: 1 bad chunk(s)",
        ],
    );
    assert!(!v.stdout.contains("Verified"), "{v:#?}");

    let target = e.path("restore.img");
    let save = format!("--save-to={}", target.display());
    e.run(&["receive", "vm-priv", &save]).expect(
        1,
        &[
            &format!("{chunk}: {why}"),
            &format!("receive of vm-priv into {} failed", target.display()),
        ],
    );
    let left: Vec<_> = std::fs::read_dir(e.root())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(left.is_empty(), "receive left {left:?} behind");

    std::fs::write(&victim, good).unwrap();
    e.verify_ok("vm-priv");
    assert_eq!(
        e.receive_sha("vm-priv", None, "restore.img"),
        sha256_file(&e.img("vm-priv"))
    );
}

#[test]
fn truncated_chunk() {
    let (e, _, s1) = archive();
    let victim = e.chunk_files("vm-priv", &s1)[2].clone();
    check_damage(
        &e,
        &s1,
        victim,
        |p| {
            let len = std::fs::metadata(p).unwrap().len();
            set_len(p, len / 2);
        },
        "hash mismatch: the stored file is corrupted or truncated",
    );
}

#[test]
fn corrupted_chunk_one_flipped_bit() {
    let (e, s0, _) = archive();
    // A chunk of the first session that the second did not replace.
    let files = e.chunk_files("vm-priv", &s0);
    let victim = files[files.len() - 1].clone();
    assert!(chunk_addr(&victim) > 3 * MIB);
    check_damage(
        &e,
        &s0,
        victim,
        |p| {
            let mut b = std::fs::read(p).unwrap();
            let i = b.len() - 1;
            b[i] ^= 0x04;
            std::fs::write(p, b).unwrap();
        },
        "hash mismatch: the stored file is corrupted or truncated",
    );
}

#[test]
fn missing_chunk() {
    let (e, _, s1) = archive();
    let victim = e.chunk_files("vm-priv", &s1)[0].clone();
    check_damage(
        &e,
        &s1,
        victim,
        |p| std::fs::remove_file(p).unwrap(),
        "the chunk file is missing from the archive",
    );
}

/// Several damaged chunks: verify lists each of them; an older session that
/// does not use a damaged chunk still verifies.
#[test]
fn verify_names_every_damaged_chunk() {
    let (e, s0, s1) = archive();
    let newer = e.chunk_files("vm-priv", &s1);
    assert_eq!(newer.len(), 6, "5 chunks written across 6: {newer:?}");
    std::fs::remove_file(&newer[1]).unwrap();
    set_len(&newer[3], 3);
    let v = e.run(&["verify", "vm-priv"]);
    v.expect(
        3,
        &[
            &format!(
                "damaged: chunk 0x{:x} of vm-priv from S_{s1}: the chunk file is missing",
                chunk_addr(&newer[1])
            ),
            &format!(
                "damaged: chunk 0x{:x} of vm-priv from S_{s1}: hash mismatch",
                chunk_addr(&newer[3])
            ),
            &format!("verify of vm-priv session {s1} FAILED: 2 bad chunk(s)"),
        ],
    );
    let s = format!("--session={s0}");
    let out = e.ok(&["verify", "vm-priv", &s]);
    assert!(
        out.contains(&format!("Verified vm-priv session {s0}")),
        "{out}"
    );
}
