//! Reading sparsebak 0.2 archives end to end with the real binaries: `list`,
//! `receive` and `verify` on archives generated exactly as 0.2 wrote them
//! (tests/legacy_support), every session of every volume compared by sha256
//! with the image it was sent from; damage and hostile metadata refused with
//! errors naming the chunk/session/file; other commands refused.

mod common;
mod legacy_support;

use common::*;
use legacy_support::*;
use std::fs;
use std::path::Path;

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

/// An environment with only vm-sys-root (three sessions), for damage tests.
fn small(env: &Env) -> Legacy {
    let cs = K64;
    let mut l = Legacy::new(&env.meta, &env.dest, cs, false);
    let mut img = image(12 * cs, cs, 6);
    assert!(l.send(SYS, "20190601-120000", &img));
    touch(&mut img, cs, 2, 1, 3, 61);
    assert!(l.send(SYS, "20190602-120000", &img));
    touch(&mut img, cs, 9, 1, 1, 62);
    assert!(l.send(SYS, "20190603-120000", &img));
    l
}

/// receive must fail naming `needles` and leave nothing at --save-to.
fn receive_fails(env: &Env, vol: &str, needles: &[&str]) {
    let t = env.path("fail.img");
    let out = env.run(&["receive", vol, &format!("--save-to={}", t.display())]);
    out.expect(1, needles);
    assert!(!t.exists(), "a failed receive left {}", t.display());
    let leftovers: Vec<_> = fs::read_dir(env.root())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("sparsebak-part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn damaged_truncated_and_missing_chunks_name_chunk_and_session() {
    let env = Env::new();
    let l = small(&env);
    // Chunk 2 of S2 is the newest entry for address 0x20000.
    let f = l.chunk_file(SYS, "20190602-120000", 2 * K64);
    let good = fs::read(&f).unwrap();
    type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let cases: [Damage; 4] = [
        (
            "hash mismatch",
            Box::new(|| {
                let mut b = good.clone();
                b[good.len() / 2] ^= 0x40;
                fs::write(&f, b).unwrap();
            }),
        ),
        (
            "hash mismatch",
            Box::new(|| fs::write(&f, &good[..good.len() - 9]).unwrap()),
        ),
        ("outside 1..=", Box::new(|| fs::write(&f, b"").unwrap())),
        (
            "missing from the archive",
            Box::new(|| fs::remove_file(&f).unwrap()),
        ),
    ];
    for (why, damage) in cases {
        damage();
        let out = env.run(&["verify", SYS]);
        out.expect(
            3,
            &[
                "damaged: chunk x0000000000020000 of vm-sys-root from S_20190602-120000",
                why,
                "FAILED: 1 bad chunk",
            ],
        );
        receive_fails(&env, SYS, &["x0000000000020000", "S_20190602-120000", why]);
        fs::write(&f, &good).unwrap();
        env.ok(&["verify", SYS]);
    }
    // The oldest session does not use that file.
    fs::remove_file(&f).unwrap();
    env.ok(&["verify", SYS, "--session=20190601-120000"]);
}

#[test]
fn a_compressed_bomb_with_a_matching_hash_is_refused() {
    let env = Env::new();
    let l = small(&env);
    // A chunk file that decompresses to more than a chunk; the manifest
    // (local metadata) is made to agree, so only the decode bound stops it.
    let big = vec![7u8; 4 * K64 as usize];
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
    std::io::Write::write_all(&mut e, &big).unwrap();
    let bomb = e.finish().unwrap();
    let f = l.chunk_file(SYS, "20190603-120000", 9 * K64);
    fs::write(&f, &bomb).unwrap();
    let m = l.local_vol(SYS).join("S_20190603-120000/manifest");
    let text = fs::read_to_string(&m).unwrap();
    let line = text
        .lines()
        .find(|x| x.ends_with("x0000000000090000"))
        .unwrap();
    fs::write(
        &m,
        text.replace(line, &format!("{} x0000000000090000", sha256_hex(&bomb))),
    )
    .unwrap();
    env.run(&["verify", SYS]).expect(
        3,
        &["x0000000000090000", "decompresses to more than 65536 bytes"],
    );
    // A stored file over the 0.2 bound is refused before it is even hashed.
    let huge = vec![1u8; (K64 + K64 / 1024 + 1) as usize];
    fs::write(&f, &huge).unwrap();
    fs::write(
        &m,
        text.replace(line, &format!("{} x0000000000090000", sha256_hex(&huge))),
    )
    .unwrap();
    env.run(&["verify", SYS])
        .expect(3, &["x0000000000090000", "65601 bytes, outside 1..=65600"]);
    receive_fails(&env, SYS, &["x0000000000090000", "outside 1..=65600"]);
}

/// Hostile or broken local metadata: a clear error naming the file, exit 1,
/// nothing written at --save-to, nothing changed in the archive or metadata.
#[test]
fn hostile_metadata_is_refused() {
    type Edit = Box<dyn Fn(&Legacy)>;
    let man = |l: &Legacy, ts: &str| l.local_vol(SYS).join(format!("S_{ts}/manifest"));
    let info = |l: &Legacy, ts: &str| l.local_vol(SYS).join(format!("S_{ts}/info"));
    let replace = |p: &Path, from: &str, to: &str| {
        let t = fs::read_to_string(p).unwrap();
        assert!(t.contains(from), "{from} not in {}", p.display());
        fs::write(p, t.replacen(from, to, 1)).unwrap();
    };
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "bad manifest line",
            Box::new(move |l| {
                replace(
                    &man(l, "20190602-120000"),
                    " x0000000000020000",
                    "  x0000000000020000",
                )
            }),
            vec!["S_20190602-120000/manifest line 1", "bad chunk address"],
        ),
        (
            "unsorted",
            Box::new(move |l| {
                let p = man(l, "20190601-120000");
                let mut lines: Vec<String> = fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .map(String::from)
                    .collect();
                lines.swap(3, 4);
                fs::write(&p, lines.join("\n") + "\n").unwrap();
            }),
            vec![
                "S_20190601-120000/manifest line 5",
                "not in ascending order",
            ],
        ),
        (
            "duplicate",
            Box::new(move |l| {
                let p = man(l, "20190603-120000");
                let t = fs::read_to_string(&p).unwrap();
                fs::write(&p, format!("{t}{t}")).unwrap();
            }),
            vec!["S_20190603-120000/manifest line 2", "duplicate or unsorted"],
        ),
        (
            "unaligned",
            Box::new(move |l| {
                replace(
                    &man(l, "20190602-120000"),
                    "x0000000000020000",
                    "x0000000000020200",
                )
            }),
            vec!["not a multiple of the chunk size 65536"],
        ),
        (
            "gap",
            Box::new(move |l| {
                let p = man(l, "20190601-120000");
                let t: String = fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .filter(|x| !x.ends_with("x0000000000050000"))
                    .map(|x| format!("{x}\n"))
                    .collect();
                fs::write(&p, t).unwrap();
            }),
            vec!["does not describe chunk x0000000000050000"],
        ),
        (
            "format_ver 2",
            Box::new(move |l| {
                replace(
                    &l.local_vol(SYS).join("volinfo"),
                    "format_ver = 1",
                    "format_ver = 2",
                )
            }),
            vec!["format_ver 2 is newer than sparsebak 0.2's format 1"],
        ),
        (
            "chain loop",
            Box::new(move |l| {
                replace(
                    &info(l, "20190601-120000"),
                    "previous = none",
                    "previous = S_20190603-120000",
                )
            }),
            vec!["session chain of volume vm-sys-root loops at S_20190603-120000"],
        ),
        (
            "missing previous",
            Box::new(move |l| {
                replace(
                    &info(l, "20190602-120000"),
                    "previous = S_20190601-120000",
                    "previous = S_20190501-120000",
                )
            }),
            vec!["broken: S_20190501-120000 (previous of S_20190602-120000)"],
        ),
        (
            "path in previous",
            Box::new(move |l| {
                replace(
                    &info(l, "20190602-120000"),
                    "previous = S_20190601-120000",
                    "previous = ../../etc",
                )
            }),
            vec!["invalid session name \"../../etc\""],
        ),
        (
            "bad volsize",
            Box::new(move |l| replace(&info(l, "20190603-120000"), "volsize = ", "volsize = -")),
            vec!["volsize \"-786432\" is not a number"],
        ),
        (
            "huge info",
            Box::new(move |l| fs::write(info(l, "20190603-120000"), "x".repeat(70_000)).unwrap()),
            vec!["is larger than 65536 bytes"],
        ),
    ];
    for (what, edit, needles) in cases {
        let env = Env::new();
        let l = small(&env);
        edit(&l);
        let before = (tree(&env.meta), tree(&env.dest));
        let out = env.run(&["verify", SYS]);
        assert_eq!(out.code, 1, "{what}: {out:#?}");
        for n in &needles {
            assert!(
                out.stderr.contains(n),
                "{what}: {n:?} not in {}",
                out.stderr
            );
        }
        receive_fails(&env, SYS, &needles);
        if what == "chain loop" {
            // list still shows the other volumes, then fails naming the broken one.
            let out = env.run(&["list"]);
            out.expect(1, &["loops at", "metadata of 1 volume(s) is broken"]);
            assert!(out.stdout.contains("sparsebak 0.2 (read-only)"), "{out:#?}");
        }
        assert_eq!(
            before,
            (tree(&env.meta), tree(&env.dest)),
            "{what} changed files"
        );
    }
}

#[test]
fn hostile_configuration_is_refused() {
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "[volumes]\n",
            "[volumes]\n../../etc = enable\n",
            "invalid volume name \"../../etc\"",
        ),
        (
            "[volumes]\n",
            "[volumes]\n.. = enable\n",
            "invalid volume name \"..\"",
        ),
        (
            "[volumes]\n",
            "[volumes]\na/b = enable\n",
            "invalid volume name \"a/b\"",
        ),
        (
            "destsys = internal:",
            "destsys = internal:/etc",
            "destsys \"internal:/etc\"",
        ),
        (
            "destsys = internal:",
            "destsys = ssh://-oProxyCommand=sh",
            "not a valid [user@]host",
        ),
        (
            "chunksize = 65536",
            "chunksize = 1000",
            "chunk size 1000 is not a multiple",
        ),
        (
            "compression = zlib",
            "compression = lz4",
            "compression \"lz4\" is not supported",
        ),
        (
            "[var]\n",
            "[var]\nchunksize = 1\n",
            "key \"chunksize\" appears twice",
        ),
    ];
    for (from, to, needle) in cases {
        let env = Env::new();
        let l = small(&env);
        let p = l.local_set().join("archive.ini");
        let t = fs::read_to_string(&p).unwrap();
        fs::write(&p, t.replacen(from, to, 1)).unwrap();
        let out = env.run(&["list"]);
        out.expect(1, &[needle, "archive.ini"]);
        receive_fails(&env, SYS, &[needle]);
    }
    // A volume name the archive does not list is never looked up.
    let env = Env::new();
    small(&env);
    env.run(&["verify", "../x"])
        .expect(1, &["invalid volume name"]);
    env.run(&["verify", "vm-nope"])
        .expect(1, &["volume vm-nope is not in the sparsebak 0.2 archive"]);
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
        .expect(1, &["--legacy works only with list, receive and verify"]);
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

/// Every file under `root` with its size and content hash.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "lock" {
                continue; // our own single-instance lock in the meta dir
            }
            if p.is_dir() {
                stack.push(p);
                out.push((rel, "dir".into()));
            } else {
                out.push((rel, sha256_hex(&fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}
