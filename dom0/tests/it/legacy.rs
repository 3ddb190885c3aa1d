//! Reading sparsebak 0.2 archives end to end with the real binaries: `list`,
//! `receive` and `verify` on archives generated exactly as 0.2 wrote them
//! (tests/legacy_support), every session of every volume compared by sha256
//! with the image it was sent from, into files and onto a loop device; other
//! commands refused. Damage and hostile input: legacy_hostile.rs.

use crate::common::*;
use crate::legacy_support::*;
use std::fs;

const WORK: &str = "vm-work-private";
const SYS: &str = "vm-sys-root";
const SHRINK: &str = "vm-shrink";
const K64: u64 = 64 * 1024;

/// Receive a session into a new file; its sha256 (the file must be exactly `size` bytes).
fn receive(env: &Env, vol: &str, ts: &str, size: u64) -> String {
    let target = env.path(&format!("out-{vol}-{ts}.img"));
    let save = format!("--save-to={}", target.display());
    let out = env.ok(&["receive", vol, &format!("--session={ts}"), &save]);
    assert!(out.contains("sparsebak 0.2 (read-only)"), "{out}");
    assert_eq!(fs::metadata(&target).unwrap().len(), size, "{vol} {ts}");
    sha256_file(&target)
}

/// vm-work-private: zero chunks, a zero short last chunk, growth past a
/// short last chunk, a shrink, and a prune (merged session, sequence gap);
/// vm-sys-root: plain incrementals; vm-shrink: a prune into a smaller
/// session; a disabled volume; a leftover `-tmp`.
fn main_archive(env: &Env) -> Legacy {
    let cs = K64;
    let mut l = Legacy::new(&env.meta, &env.dest, cs, false);
    let mut img = image(40 * cs + 1000, cs, 1);
    zero(&mut img, cs, 40, 1); // the short last chunk is zero: stored anyway
    assert!(l.send(WORK, "20190601-120000", &img));
    touch(&mut img, cs, 3, 5, 6, 11);
    zero(&mut img, cs, 5, 3); // data becomes zero: `0` lines in an incremental
    assert!(l.send(WORK, "20190602-120000", &img));
    // Grow past the short last chunk, leaving its new part zero: 0.2 does not
    // resend it, so restoring pads the 1000-byte chunk with zeros.
    let mut grown = img.clone();
    grown.resize((50 * cs + 5000) as usize, 0);
    touch(&mut grown, cs, 41, 2, 5, 12);
    touch(&mut grown, cs, 1, 7, 3, 13);
    assert!(l.send(WORK, "20190603-120000", &grown));
    // Shrink inside chunk 30: the new last chunk is not resent, so its entry
    // is an older, longer one, cut off at the new size.
    let mut shrunk = grown[..(30 * cs + 300) as usize].to_vec();
    touch(&mut shrunk, cs, 2, 9, 3, 14);
    assert!(l.send(WORK, "20190604-120000", &shrunk));
    touch(&mut shrunk, cs, 0, 4, 4, 15);
    assert!(l.send(WORK, "20190605-120000", &shrunk));
    zero(&mut shrunk, cs, 10, 2);
    touch(&mut shrunk, cs, 29, 1, 2, 16);
    assert!(l.send(WORK, "20190606-120000", &shrunk));
    l.prune(WORK, "20190602-120000", "20190602-120000");
    l.leftover_tmp(WORK, "20190607-120000");

    let mut sys = image(24 * cs, cs, 2);
    assert!(l.send(SYS, "20190601-120000", &sys));
    touch(&mut sys, cs, 1, 3, 5, 21);
    assert!(l.send(SYS, "20190602-130000", &sys));
    zero(&mut sys, cs, 0, 24);
    assert!(l.send(SYS, "20190603-140000", &sys));
    // A prune into a smaller session: the merged manifest is cut at the
    // target's size and its last chunk is an older, longer entry.
    let mut sh = image(20 * cs, cs, 7);
    assert!(l.send(SHRINK, "20190601-120000", &sh));
    touch(&mut sh, cs, 3, 4, 3, 71);
    assert!(l.send(SHRINK, "20190602-120000", &sh));
    let mut sh = sh[..(12 * cs + 500) as usize].to_vec();
    touch(&mut sh, cs, 0, 1, 1, 72);
    assert!(l.send(SHRINK, "20190603-120000", &sh));
    touch(&mut sh, cs, 5, 1, 1, 73);
    assert!(l.send(SHRINK, "20190604-120000", &sh));
    l.prune(SHRINK, "20190601-120000", "20190602-120000");
    l.extra_volume_lines.push("vm-off = disable".into());
    l.write_ini();
    l
}

fn check_every_session(env: &Env, l: &Legacy, vol: &str) {
    for s in &l.vols[vol].sessions {
        let ts = &s.name[2..];
        assert_eq!(
            receive(env, vol, ts, s.volsize),
            sha256(&s.image),
            "{vol} session {ts} restored wrong bytes"
        );
        let out = env.ok(&["verify", vol, &format!("--session={ts}")]);
        assert!(
            out.contains(&format!("Verified {vol} session {ts}")),
            "{out}"
        );
    }
}

#[test]
fn every_session_of_every_volume_restores_the_source() {
    let env = Env::new();
    let l = main_archive(&env);
    assert_eq!(
        l.timestamps(WORK),
        [
            "20190601-120000",
            "20190603-120000",
            "20190604-120000",
            "20190605-120000",
            "20190606-120000"
        ]
    );
    check_every_session(&env, &l, WORK);
    check_every_session(&env, &l, SYS);
    assert_eq!(l.timestamps(SHRINK), ["20190603-120000", "20190604-120000"]);
    check_every_session(&env, &l, SHRINK);
    // The latest by default.
    let t = env.path("latest.img");
    env.ok(&["receive", SYS, &format!("--save-to={}", t.display())]);
    assert_eq!(sha256_file(&t), sha256(&l.vols[SYS].sessions[2].image));
    env.ok(&["verify", WORK]);
}

#[test]
fn every_session_restores_onto_a_loop_device() {
    if !have_root("every_session_restores_onto_a_loop_device") {
        return;
    }
    let env = Env::new();
    let l = main_archive(&env);
    // Stale non-zero bytes everywhere: zero chunks must come back as zeros.
    let backing = env.path("loop-backing");
    fs::write(&backing, vec![0xa5u8; 4 * MIB as usize]).unwrap();
    let dev = Loop::new(&backing);
    let save = format!("--save-to={}", dev.0.display());
    for s in l.vols[WORK].sessions.iter().rev() {
        let ts = &s.name[2..];
        let out = env.ok(&["receive", WORK, &save, &format!("--session={ts}"), "-u"]);
        assert!(out.contains(&format!("into {}", dev.0.display())), "{out}");
        assert_eq!(
            sha256_prefix(&dev.0, s.volsize),
            sha256(&s.image),
            "{WORK} session {ts} on {}",
            dev.0.display()
        );
    }
}

#[test]
fn list_shows_the_0_2_archive_read_only() {
    let env = Env::new();
    let _l = main_archive(&env);
    let out = env.ok(&["list"]);
    assert!(out.contains("sparsebak 0.2 (read-only)"), "{out}");
    let line = |v: &str| out.lines().find(|x| x.contains(v)).unwrap().to_string();
    assert!(
        line(WORK).contains("5 sessions, last 20190606-120000"),
        "{out}"
    );
    assert!(line(SYS).contains("3 sessions"), "{out}");
    assert!(line("vm-off").contains("(disabled)"), "{out}");
    let out = env.ok(&["list", WORK]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{out}");
    // Chain order, sequences as 0.2 left them after the prune (1 gone).
    for (row, (ts, seq, size)) in rows.iter().zip([
        ("20190601-120000", 0, "2.5 MiB"),
        ("20190603-120000", 2, "3.1 MiB"),
        ("20190604-120000", 3, "1.9 MiB"),
        ("20190605-120000", 4, "1.9 MiB"),
        ("20190606-120000", 5, "1.9 MiB"),
    ]) {
        assert!(row.contains(ts), "{row}");
        assert!(row.contains(&format!("seq {seq:>5}")), "{row}");
        assert!(row.contains(size), "{row}");
    }
    assert!(
        !out.contains("20190607"),
        "a -tmp session was listed: {out}"
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["list", WORK, "--json"])).unwrap();
    assert_eq!(json[1]["volsize"], 50 * K64 + 5000);
    assert_eq!(json[1]["previous"], "S_20190601-120000");
}

#[test]
fn pre_2019_gzip_archive_with_128k_chunks_and_empty_zero_files() {
    let env = Env::new();
    let cs = 2 * K64;
    let mut l = Legacy::new(&env.meta, &env.dest, cs, true);
    let mut img = image(20 * cs + 777, cs, 3);
    assert!(l.send("vm-old", "20181101-090000", &img));
    touch(&mut img, cs, 0, 3, 4, 31);
    zero(&mut img, cs, 2, 1);
    assert!(l.send("vm-old", "20181102-090000", &img));
    touch(&mut img, cs, 20, 1, 1, 32);
    assert!(l.send("vm-old", "20181215-090000", &img));
    // Old sessions kept an empty file for each zero chunk.
    let z = l.chunk_file("vm-old", "20181102-090000", 2 * cs);
    assert_eq!(fs::metadata(&z).unwrap().len(), 0);
    let first = l.chunk_file("vm-old", "20181101-090000", 0);
    assert_eq!(&fs::read(first).unwrap()[..2], &[0x1f, 0x8b], "gzip chunks");
    check_every_session(&env, &l, "vm-old");
}

#[test]
fn only_reading_commands_run_on_a_0_2_meta_dir() {
    let env = Env::new();
    let l = small(&env);
    let before = (tree(&env.meta), tree(&env.dest));
    let msg = "holds a sparsebak 0.2 archive";
    for args in [
        vec!["send"],
        vec!["send", SYS],
        vec!["monitor"],
        vec!["add", "vm-new"],
        vec!["delete", SYS, "-u"],
        vec!["prune", SYS, "--session=20190601-120000"],
        vec!["diff", SYS],
        vec!["arch-delete"],
    ] {
        env.run(&args).expect(
            1,
            &[
                msg,
                "only list, receive and verify can read it",
                "run arch-init",
            ],
        );
    }
    assert_eq!(before, (tree(&env.meta), tree(&env.dest)));
    env.run(&[
        "receive",
        SYS,
        "--session=20190601-120000,20190602-120000",
        "--save-to=/tmp/x",
    ])
    .expect(1, &["receive takes one session"]);
    env.run(&["verify", SYS, "--session=20190601-120000,20190602-120000"])
        .expect(1, &["verify takes one session"]);
    env.run(&["verify", SYS, "--session=20190101-000000"])
        .expect(
            1,
            &["session S_20190101-000000 does not exist for volume vm-sys-root"],
        );

    // A new archive of our own can start beside it; --legacy still reads 0.2's.
    fs::create_dir_all(&env.src).unwrap();
    env.init(&[]);
    let out = env.ok(&["list"]);
    assert!(!out.contains("sparsebak 0.2"), "{out}");
    env.run(&["send", "--legacy"])
        .expect(2, &["unexpected argument '--legacy'"]);
    let out = env.ok(&["list", "--legacy"]);
    assert!(out.contains("sparsebak 0.2 (read-only)"), "{out}");
    let t = env.path("beside.img");
    env.ok(&[
        "receive",
        SYS,
        "--legacy",
        &format!("--save-to={}", t.display()),
    ]);
    assert_eq!(sha256_file(&t), sha256(&l.vols[SYS].sessions[2].image));
    env.ok(&["verify", SYS, "--legacy"]);
}

#[test]
fn legacy_flag_without_a_0_2_archive_is_an_error() {
    let env = Env::new();
    env.init(&[]);
    env.run(&["list", "--legacy"])
        .expect(1, &["--legacy: no sparsebak 0.2 archive in"]);
}
