//! Restore equality at every session: a volume changes in every way a disk
//! changes (overwrites, zeroing, growth, shrinking, nothing at all) between
//! sends, and each session restores to exactly the bytes it was sent from,
//! into a new file and onto a real block device (a loop device).

use crate::common::*;

/// One step of the history: change the image, send, remember its sha256.
struct Step {
    what: &'static str,
    change: fn(&std::path::Path),
}

fn history() -> Vec<Step> {
    vec![
        Step {
            what: "full send of a 6 MiB + 12345 image",
            change: |p| write_file(p, &realistic_bytes(6 * MIB + 12_345, 10)),
        },
        Step {
            what: "overwrite ranges with random data and text",
            change: |p| {
                write_at(p, 7, &random_bytes(3 * CHUNK + 11, 11));
                write_at(p, 2 * MIB - 3, &text_bytes(200_000, 12));
                write_at(p, 6 * MIB + 12_000, &random_bytes(345, 13));
            },
        },
        Step {
            what: "write zeros over data",
            change: |p| {
                write_at(p, 100_000, &vec![0u8; 400_000]);
                write_at(p, 5 * MIB, &vec![0u8; CHUNK as usize]);
            },
        },
        Step {
            what: "grow to 9 MiB + 777 with data at the end",
            change: |p| {
                set_len(p, 9 * MIB + 777);
                write_at(p, 8 * MIB + 5, &random_bytes(MIB + 772 - 5, 14));
                write_at(p, 6 * MIB + 20_000, &text_bytes(70_000, 15));
            },
        },
        Step {
            what: "shrink to 4 MiB + 4321",
            change: |p| set_len(p, 4 * MIB + 4321),
        },
        Step {
            what: "grow back to 5 MiB + 1: the regrown range must read as zeros",
            change: |p| {
                set_len(p, 5 * MIB + 1);
                write_at(p, 5 * MIB, &[0x42]);
            },
        },
        Step {
            what: "a few bytes in the first and the last chunk",
            change: |p| {
                write_at(p, 0, b"MBR!");
                write_at(p, 5 * MIB - 2, b"end");
            },
        },
    ]
}

#[test]
fn every_session_restores_exactly() {
    let e = Env::new();
    e.init(&[]);
    let img = e.img("vm-data");
    write_file(&img, b"");
    e.ok(&["add", "vm-data"]);
    let mut recorded: Vec<(String, u64, &str)> = Vec::new();
    for (i, step) in history().iter().enumerate() {
        (step.change)(&img);
        let out = e.ok(&["send", "-u"]);
        let names = e.session_names("vm-data");
        assert_eq!(
            names.len(),
            i + 1,
            "step {:?} made no session: {out}",
            step.what
        );
        let size = std::fs::metadata(&img).unwrap().len();
        assert_eq!(e.sessions("vm-data")[i]["volsize"], size, "{}", step.what);
        recorded.push((sha256_file(&img), size, step.what));
        if i == 0 {
            // No change at all: no new session.
            let out = e.ok(&["send", "-u"]);
            assert!(out.contains("Volume vm-data: no changes"), "{out}");
            assert_eq!(e.session_names("vm-data").len(), 1);
        }
    }
    let out = e.ok(&["send"]);
    assert!(out.contains("no changes"), "{out}");
    let names = e.session_names("vm-data");
    assert_eq!(names.len(), recorded.len());

    for (i, (name, (sha, size, what))) in names.iter().zip(&recorded).enumerate() {
        let target = e.path(&format!("restored-{i}"));
        let got = e.receive_sha("vm-data", Some(name), &format!("restored-{i}"));
        assert_eq!(
            std::fs::metadata(&target).unwrap().len(),
            *size,
            "size of session {name} ({what})"
        );
        assert_eq!(&got, sha, "content of session {name} ({what})");
        let s = format!("--session={name}");
        let out = e.ok(&["verify", "vm-data", &s]);
        assert!(
            out.contains(&format!("Verified vm-data session {name}")),
            "{out}"
        );
    }
    // Without --session: the latest.
    let got = e.receive_sha("vm-data", None, "latest");
    assert_eq!(got, sha256_file(&img));
}

/// The same history received onto a loop device pre-filled with garbage,
/// largest session first, so stale bytes from an earlier restore must be
/// overwritten with the session's zeros.
#[test]
fn every_session_restores_onto_a_loop_device() {
    if !have_root("every_session_restores_onto_a_loop_device") {
        return;
    }
    let e = Env::new();
    e.init(&[]);
    let img = e.img("blk");
    write_file(&img, b"");
    e.ok(&["add", "blk"]);
    let mut recorded = Vec::new();
    for step in history() {
        (step.change)(&img);
        e.ok(&["send", "-u"]);
        recorded.push((sha256_file(&img), std::fs::metadata(&img).unwrap().len()));
    }
    let backing = e.path("loop-backing");
    write_file(&backing, &vec![0xa5u8; 10 * MIB as usize]);
    let dev = Loop::new(&backing);
    let save = format!("--save-to={}", dev.0.display());
    let names = e.session_names("blk");
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(recorded[i].1));
    for i in order {
        let s = format!("--session={}", names[i]);
        // The device exists: without -u receive would ask.
        let out = e.ok(&["receive", "blk", &save, &s, "-u"]);
        assert!(out.contains(&format!("into {}", dev.0.display())), "{out}");
        let (sha, size) = &recorded[i];
        assert_eq!(
            &sha256_prefix(&dev.0, *size),
            sha,
            "session {} on {}",
            names[i],
            dev.0.display()
        );
    }
    // A device smaller than the volume is refused, naming both.
    let small = e.path("small-backing");
    write_file(&small, &vec![0u8; MIB as usize]);
    let small_dev = Loop::new(&small);
    let save = format!("--save-to={}", small_dev.0.display());
    e.run(&["receive", "blk", &save, "-u"]).expect(
        1,
        &[
            &format!("block device {} holds", small_dev.0.display()),
            "the volume needs",
        ],
    );
}

/// A mostly-zero image comes back as a sparse file.
#[test]
fn receive_creates_a_sparse_file() {
    let e = Env::new();
    e.init(&[]);
    let img = e.img("sparse");
    let size = 16 * MIB + 100;
    write_file(&img, b"");
    set_len(&img, size);
    write_at(&img, 0, &text_bytes(50_000, 1));
    write_at(&img, 9 * MIB + 3, &random_bytes(70_000, 2));
    e.ok(&["add", "sparse"]);
    e.ok(&["send"]);
    let sha = e.receive_sha("sparse", None, "out");
    assert_eq!(sha, sha256_file(&img));
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(e.path("out")).unwrap();
    assert_eq!(m.len(), size);
    let allocated = m.blocks() * 512;
    assert!(
        allocated < MIB,
        "restored file allocates {allocated} bytes of {size}: not sparse"
    );
}

/// A receive that fails (corrupted chunk) leaves an existing target exactly
/// as it was, and no partial file beside it.
#[test]
fn failed_receive_leaves_existing_target_untouched() {
    let e = Env::new();
    e.init(&[]);
    write_file(&e.img("v"), &realistic_bytes(4 * MIB + 1000, 20));
    e.ok(&["add", "v"]);
    e.ok(&["send"]);
    let name = &e.session_names("v")[0];
    let files = e.chunk_files("v", name);
    let victim = &files[files.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    write_file(victim, &bytes);

    let target = e.path("precious.img");
    let precious = text_bytes(300_000, 7);
    write_file(&target, &precious);
    let save = format!("--save-to={}", target.display());
    e.run(&["receive", "v", &save, "-u"]).expect(
        1,
        &[
            &format!("chunk 0x{:x} of v from S_{name}", chunk_addr(victim)),
            "hash mismatch",
            &format!("receive of v into {} failed", target.display()),
        ],
    );
    assert_eq!(
        sha256_file(&target),
        sha256(&precious),
        "target was modified"
    );
    let leftovers: Vec<_> = std::fs::read_dir(e.root())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("sparsebak-part"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

/// Sends in the same second, and a clock that went backwards, still give
/// distinct, ordered sessions that each restore their own bytes. The clock
/// is frozen with libfaketime (LD_PRELOAD), the real library, not a hook.
#[test]
fn sends_in_the_same_second_do_not_collide() {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).is_file(),
        "{lib} is missing: tests/setup-host.sh installs the faketime package"
    );
    let e = Env::new();
    e.init(&[]);
    let img = e.img("vol");
    write_file(&img, &random_bytes(3 * MIB, 11));
    e.ok(&["add", "vol"]);
    let mut shas = Vec::new();
    // Three sends at one frozen instant, then one with the clock a day back.
    for (i, when) in [
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:00",
        "2025-12-31 00:00:00",
    ]
    .iter()
    .enumerate()
    {
        write_at(&img, i as u64 * MIB, &random_bytes(4096, 100 + i as u64));
        let o = run_sparsebak(
            &["send", "-u"],
            &e.meta,
            &[("LD_PRELOAD", lib), ("FAKETIME", when)],
        );
        assert_eq!(o.code, 0, "send {i} at {when}: {o:#?}");
        shas.push(sha256_file(&img));
    }
    let names = e.session_names("vol");
    assert_eq!(
        names,
        [
            "20260101-000000",
            "20260101-000001",
            "20260101-000002",
            "20260101-000003"
        ],
        "sessions are named after the previous one when the clock does not advance"
    );
    for (i, (name, sha)) in names.iter().zip(&shas).enumerate() {
        let got = e.receive_sha("vol", Some(name), &format!("r{i}"));
        assert_eq!(&got, sha, "session {name}");
    }
}

/// The zstd frame of a chunk file, and whether it carries zstd's content
/// checksum (docs/FORMAT.md §22.3); `None` for a file not stored as zstd.
fn zstd_checksum_flag(file: &std::path::Path) -> Option<bool> {
    let b = std::fs::read(file).unwrap();
    (b[4] == 1).then(|| {
        assert_eq!(&b[12..16], &[0x28, 0xb5, 0x2f, 0xfd], "{}", file.display());
        b[16] & 4 != 0
    })
}

/// An archive made before §22.3 (no `zstd_checksum` in dom0's config)
/// keeps writing zstd frames without the checksum, whose content hash
/// receive and verify check; one made by arch-init now writes them with it.
/// Sessions of either kind, and an archive holding both, restore exactly.
#[test]
fn zstd_frames_with_and_without_the_checksum_restore_exactly() {
    let e = Env::new();
    e.init(&[]);
    assert_eq!(e.config()["zstd_checksum"], true);
    let img = e.img("mixed");
    write_file(&img, &realistic_bytes(2 * MIB, 21));
    e.ok(&["add", "mixed"]);
    // As an archive made before: the flag absent.
    let cfg_path = e.meta.join("archive.json");
    let mut cfg = e.config();
    cfg.as_object_mut().unwrap().remove("zstd_checksum");
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    e.ok(&["send", "-u"]);
    let old_sha = sha256_file(&img);
    write_at(&img, 100_000, &text_bytes(300_000, 22));
    cfg["zstd_checksum"] = serde_json::json!(true);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    e.ok(&["send", "-u"]);
    let new_sha = sha256_file(&img);
    let names = e.session_names("mixed");
    let flags = |s: &str| -> Vec<bool> {
        let f: Vec<bool> = e
            .chunk_files("mixed", s)
            .iter()
            .filter_map(|p| zstd_checksum_flag(p))
            .collect();
        assert!(!f.is_empty(), "session {s} has zstd chunk files");
        f
    };
    assert!(flags(&names[0]).iter().all(|f| !f), "before: no checksum");
    assert!(flags(&names[1]).iter().all(|f| *f), "now: the checksum");
    for (name, sha) in names.iter().zip([old_sha, new_sha]) {
        let got = e.receive_sha("mixed", Some(name), &format!("out-{name}"));
        assert_eq!(got, sha, "session {name}");
        let s = format!("--session={name}");
        let out = e.ok(&["verify", "mixed", &s]);
        assert!(
            out.contains(&format!("Verified mixed session {name}")),
            "{out}"
        );
    }
}
