//! Every command of `sparsebak` works end to end, through the real binaries:
//! arch-init (and its variants), add, list, send, receive, verify, delete,
//! version, with options before and after the command.

use crate::common::*;

#[test]
fn version_prints_the_package_version() {
    let e = Env::new();
    let out = e.ok(&["version"]);
    assert_eq!(
        out.trim(),
        format!("sparsebak {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn arch_init_writes_config_and_archive_header() {
    let e = Env::new();
    let out = e.init(&[]);
    assert!(out.starts_with("Initialised archive "), "{out}");
    assert!(out.contains("chunk size 64.0 KiB, zstd:3"), "{out}");
    let c = e.config();
    let header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.archive_dir().join("archive.json")).unwrap())
            .unwrap();
    assert_eq!(c["uuid"], header["uuid"], "config and header disagree");
    assert_eq!(c["chunk_size"], 65536);
    assert_eq!(c["compression"]["codec"], "zstd");
    assert_eq!(c["source"]["path"], e.src.to_string_lossy().as_ref());
    assert!(e.archive_dir().join("volumes").is_dir());
    // list of an empty archive
    let out = e.ok(&["list"]);
    assert!(out.contains("Configured volumes (internal:"), "{out}");
    assert_eq!(e.ok(&["list", "--json"]).trim(), "[]");
}

/// Full send, then an incremental one whose session records exactly the
/// chunks the writes touched.
#[test]
fn send_full_then_incremental_records_touched_chunks() {
    let e = Env::new();
    e.init(&[]);
    let size = 5 * MIB + 12_345; // not a multiple of 64 KiB
    write_file(&e.img("work"), &realistic_bytes(size, 1));
    let out = e.ok(&["add", "work"]);
    assert_eq!(
        out.trim(),
        format!("Volume work added (source {}).", e.img("work").display())
    );
    let out = e.ok(&["send", "-u"]);
    assert!(out.contains("Volume work: full session "), "{out}");
    let s = e.sessions("work");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0]["volsize"], size);
    assert_eq!(
        s[0]["chunks"],
        size.div_ceil(CHUNK),
        "a full session records every chunk"
    );

    // Writes: inside one chunk, across a chunk boundary, over several
    // chunks, and the short last chunk.
    let writes = [
        (100, 10),
        (3 * CHUNK - 5, 20),
        (20 * CHUNK + 7, 3 * CHUNK),
        (size - 100, 100),
    ];
    for (i, &(off, len)) in writes.iter().enumerate() {
        write_at(&e.img("work"), off, &random_bytes(len, 100 + i as u64));
    }
    let want = touched_chunks(&writes, CHUNK).len() as u64;
    assert_eq!(want, 1 + 2 + 4 + 1);
    let out = e.ok(&["-u", "send", "work"]);
    assert!(
        out.contains("Volume work: incremental session ")
            && out.contains(&format!("{want} chunks changed")),
        "{out}"
    );
    let s = e.sessions("work");
    assert_eq!(s.len(), 2);
    assert_eq!(s[1]["chunks"], want, "incremental session: {:#}", s[1]);
    assert_eq!(s[1]["previous"], s[0]["name"]);

    // list in text form names both sessions.
    let out = e.ok(&["list", "work"]);
    for n in e.session_names("work") {
        assert!(out.contains(&n), "{out}");
    }
    let out = e.ok(&["list"]);
    assert!(out.contains("work") && out.contains("2 sessions"), "{out}");
    let all: serde_json::Value = serde_json::from_str(&e.ok(&["list", "--json"])).unwrap();
    assert_eq!(all[0]["volume"], "work");
    assert_eq!(all[0]["sessions"], 2);

    e.verify_ok("work");
    let sha = e.receive_sha("work", None, "restored");
    assert_eq!(sha, sha256_file(&e.img("work")));
}

#[test]
fn add_with_path_and_options_before_the_command() {
    let e = Env::new();
    e.init(&[]);
    let elsewhere = e.path("elsewhere.img");
    write_file(&elsewhere, &realistic_bytes(3 * MIB + 4097, 2));
    let p = format!("--path={}", elsewhere.display());
    let out = e.ok(&["add", "vm-x_1.2+3", &p]);
    assert!(
        out.contains(&format!("source {}", elsewhere.display())),
        "{out}"
    );
    assert_eq!(
        e.config()["volumes"]["vm-x_1.2+3"]["path"],
        elsewhere.to_string_lossy().as_ref()
    );
    // A relative --path is refused.
    e.run(&["add", "rel", "--path=img/rel"])
        .expect(1, &["--path img/rel must be absolute"]);
    assert!(e.config()["volumes"].get("rel").is_none());
    // Adding twice is refused.
    e.run(&["add", "vm-x_1.2+3"])
        .expect(1, &["volume vm-x_1.2+3 is already in the configuration"]);

    // --meta-dir given explicitly instead of the environment, options first.
    let m = format!("--meta-dir={}", e.meta.display());
    let out = e.run_with(&[&m, "-u", "send", "vm-x_1.2+3"], &e.path("unused-meta"));
    assert_eq!(out.code, 0, "{out:#?}");
    let save = format!("--save-to={}", e.path("out.img").display());
    e.ok(&["--unattended", "receive", "vm-x_1.2+3", &save]);
    assert_eq!(sha256_file(&e.path("out.img")), sha256_file(&elsewhere));
    let name = &e.session_names("vm-x_1.2+3")[0];
    let s = format!("--session={name}");
    let out = e.ok(&["verify", "vm-x_1.2+3", &s]);
    assert!(out.contains(&format!("session {name}")), "{out}");
}

/// An archive with zlib chunks and 128 KiB chunks restores exactly.
#[test]
fn arch_init_zlib_and_chunk_factor_2() {
    let e = Env::new();
    let out = e.init(&["--compression=zlib:4", "--chunk-factor=2"]);
    assert!(out.contains("chunk size 128.0 KiB, zlib:4"), "{out}");
    let c = e.config();
    assert_eq!(c["compression"]["codec"], "zlib");
    assert_eq!(c["compression"]["level"], 4);
    assert_eq!(c["chunk_size"], 2 * CHUNK);
    let size = 4 * MIB + 3 * CHUNK + 999;
    write_file(&e.img("v"), &realistic_bytes(size, 3));
    e.ok(&["add", "v"]);
    e.ok(&["send", "v"]);
    assert_eq!(e.sessions("v")[0]["chunks"], size.div_ceil(2 * CHUNK));
    // Chunk files say their codec in byte 4 (0 raw, 1 zstd, 2 zlib): the
    // compressible ones must be zlib, none zstd.
    let name = &e.session_names("v")[0];
    let codecs: Vec<u8> = e
        .chunk_files("v", name)
        .iter()
        .map(|f| std::fs::read(f).unwrap()[4])
        .collect();
    assert!(codecs.contains(&2), "no zlib chunk: {codecs:?}");
    assert!(
        !codecs.contains(&1),
        "zstd chunk in a zlib archive: {codecs:?}"
    );
    // Two writes in one 128 KiB chunk count once; one 64 KiB write spanning
    // two 128 KiB chunks counts twice.
    let writes = [(10, 10), (CHUNK + 10, 10), (5 * CHUNK + 100, CHUNK)];
    for (i, &(off, len)) in writes.iter().enumerate() {
        write_at(&e.img("v"), off, &random_bytes(len, 50 + i as u64));
    }
    e.ok(&["send"]);
    assert_eq!(
        e.sessions("v")[1]["chunks"],
        touched_chunks(&writes, 2 * CHUNK).len() as u64
    );
    assert_eq!(touched_chunks(&writes, 2 * CHUNK).len(), 3);
    e.verify_ok("v");
    for (i, n) in e.session_names("v").iter().enumerate() {
        let sha = e.receive_sha("v", Some(n), &format!("r{i}"));
        if i == 1 {
            assert_eq!(sha, sha256_file(&e.img("v")));
        }
    }
}

#[test]
fn delete_removes_archive_metadata_and_config_entry() {
    let e = Env::new();
    e.init(&[]);
    write_file(&e.img("keep"), &realistic_bytes(2 * MIB + 1, 4));
    write_file(&e.img("gone"), &realistic_bytes(2 * MIB + 2, 5));
    e.ok(&["add", "keep"]);
    e.ok(&["add", "gone"]);
    let out = e.ok(&["send"]);
    assert!(
        out.contains("Volume keep: full") && out.contains("Volume gone: full"),
        "{out}"
    );
    assert!(e.vol_archive_dir("gone").is_dir());
    assert!(e.meta.join("volumes/gone").is_dir());

    // Without -u and without a terminal, delete asks for -u and does nothing.
    e.run(&["delete", "gone"])
        .expect(1, &["Delete volume gone", "pass -u"]);
    assert!(e.vol_archive_dir("gone").is_dir());

    let out = e.ok(&["delete", "gone", "-u"]);
    assert!(out.contains("Volume gone deleted"), "{out}");
    assert!(
        !e.vol_archive_dir("gone").exists(),
        "archive dir left behind"
    );
    assert!(
        !e.meta.join("volumes/gone").exists(),
        "local metadata left behind"
    );
    assert!(
        e.config()["volumes"].get("gone").is_none(),
        "config entry left behind"
    );
    e.run(&["list", "gone"])
        .expect(1, &["volume gone is not configured"]);
    // The other volume is untouched, and the name can be used again.
    e.verify_ok("keep");
    e.ok(&["add", "gone"]);
    e.ok(&["send", "gone"]);
    assert_eq!(e.sessions("gone").len(), 1);
    assert_eq!(
        e.receive_sha("gone", None, "again"),
        sha256_file(&e.img("gone"))
    );
}
