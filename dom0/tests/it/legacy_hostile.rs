//! sparsebak 0.2 archives that are damaged or hostile, end to end with the
//! real binaries: damaged, truncated, missing and oversized chunk files and
//! decompression bombs (verify exits 3 naming chunk and session, receive
//! fails naming it and writes nothing), and hostile local metadata or
//! configuration (a clear error naming the file, nothing changed anywhere).

use crate::common::*;
use crate::legacy_support::*;
use std::fs;
use std::path::Path;

const SYS: &str = "vm-sys-root";
const K64: u64 = 64 * 1024;

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
