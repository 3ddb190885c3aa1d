//! Deduplication end to end with the real binaries (docs/FORMAT.md §12):
//! `send --dedup` stores chunks already in the archive (other volume, older
//! session, or earlier in the same session) as hard links; `arch-deduplicate`
//! does the same afterwards; prune and delete keep every remaining session
//! restorable; a destination without hard links is refused before anything
//! is sent. Every session of every volume is received and compared (sha256)
//! with the image it was sent from.

use crate::common::*;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const VA: &str = "va";
const VB: &str = "vb";

/// Chunk-sized blocks: `shared(i)` occurs in both volumes, `rep` repeats.
fn block(seed: u64) -> Vec<u8> {
    random_bytes(CHUNK, seed)
}

/// An archive with two volumes and the sha256 of each image at each session.
struct World {
    e: Env,
    hist: BTreeMap<String, BTreeMap<String, String>>,
    /// Volumes still configured.
    live: Vec<&'static str>,
}

impl World {
    fn new() -> World {
        let e = Env::new();
        e.init(&[]);
        // va: 8 shared blocks, a block repeated 4 times, 4 own blocks.
        let mut a = Vec::new();
        for i in 0..8 {
            a.extend(block(100 + i));
        }
        for _ in 0..4 {
            a.extend(block(7));
        }
        for i in 0..4 {
            a.extend(block(200 + i));
        }
        // vb: 2 own blocks, the 8 shared ones, the repeated one, text.
        let mut b = block(300);
        b.extend(block(301));
        for i in 0..8 {
            b.extend(block(100 + i));
        }
        b.extend(block(7));
        b.extend(text_bytes(3 * CHUNK + 1000, 9));
        write_file(&e.img(VA), &a);
        write_file(&e.img(VB), &b);
        for v in [VA, VB] {
            e.ok(&["add", v]);
        }
        World {
            e,
            hist: BTreeMap::new(),
            live: vec![VA, VB],
        }
    }

    /// `send` (with `--dedup` if asked); records each new session's image.
    fn send(&mut self, dedup: bool) -> String {
        let mut args = vec!["-u", "send"];
        if dedup {
            args.push("--dedup");
        }
        let out = self.e.ok(&args);
        for v in self.live.clone() {
            if let Some(last) = self.e.session_names(v).last() {
                let h = self.hist.entry(v.into()).or_default();
                if !h.contains_key(last) {
                    h.insert(last.clone(), sha256_file(&self.e.img(v)));
                }
            }
        }
        out
    }

    /// Receive every session of every volume still in the archive.
    fn check_all(&self) {
        let mut n = 0;
        for (v, sessions) in &self.hist {
            for s in &self.e.session_names(v) {
                let want = &sessions[s];
                let got = self.e.receive_sha(v, Some(s), &format!("r-{v}-{s}"));
                assert_eq!(&got, want, "{v} session {s} does not restore its image");
                std::fs::remove_file(self.e.path(&format!("r-{v}-{s}"))).unwrap();
                n += 1;
            }
            self.e.verify_ok(v);
        }
        assert!(n > 0);
    }

    fn file(&self, v: &str, s: &str, addr: u64) -> PathBuf {
        self.e
            .vol_archive_dir(v)
            .join(format!("S_{s}"))
            .join(format!("{:09x}", addr >> 28))
            .join(format!("x{addr:016x}"))
    }
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

/// (chunk files, distinct inodes, bytes of distinct inodes) in the archive.
fn usage(root: &Path) -> (u64, u64, u64) {
    let mut seen = HashSet::new();
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if m.is_dir() {
                stack.push(e.path());
            } else if name.starts_with('x') && name.len() == 17 {
                files += 1;
                if seen.insert(m.ino()) {
                    bytes += m.len();
                }
            }
        }
    }
    (files, seen.len() as u64, bytes)
}

#[test]
fn send_dedup_links_shared_and_repeated_chunks_and_every_session_restores() {
    let mut w = World::new();
    let out = w.send(true);
    assert!(out.contains("deduplicated: 3 chunks linked"), "{out}");
    assert!(out.contains("deduplicated: 9 chunks linked"), "{out}");
    let (a0, b0) = (
        w.e.session_names(VA)[0].clone(),
        w.e.session_names(VB)[0].clone(),
    );
    // Repeats inside va link to the first copy of the same session.
    let rep = ino(&w.file(VA, &a0, 8 * CHUNK));
    for i in 9..12 {
        assert_eq!(ino(&w.file(VA, &a0, i * CHUNK)), rep);
    }
    assert!(
        std::fs::metadata(w.file(VA, &a0, 8 * CHUNK))
            .unwrap()
            .nlink()
            >= 5
    );
    // vb's shared blocks are va's files.
    for i in 0..8 {
        assert_eq!(
            ino(&w.file(VB, &b0, (2 + i) * CHUNK)),
            ino(&w.file(VA, &a0, i * CHUNK))
        );
    }
    assert_eq!(ino(&w.file(VB, &b0, 10 * CHUNK)), rep);
    let (files, inodes, bytes) = usage(&w.e.archive_dir());
    assert_eq!(files, 16 + 15);
    assert_eq!(files - inodes, 12);
    // The same images sent without --dedup take 12 (incompressible) chunk
    // files more.
    let mut plain = World::new();
    plain.send(false);
    let (pfiles, pinodes, pbytes) = usage(&plain.e.archive_dir());
    assert_eq!((pfiles, pinodes), (files, files));
    assert!(pbytes >= bytes + 12 * CHUNK, "{pbytes} vs {bytes}");

    // Incremental sessions: va copies vb's own block; vb gets va's own block
    // and a brand-new block twice.
    write_at(&w.e.img(VA), 13 * CHUNK, &block(300));
    write_at(&w.e.img(VB), 0, &block(201));
    write_at(&w.e.img(VB), CHUNK, &block(999));
    write_at(&w.e.img(VB), 12 * CHUNK, &block(999));
    let out = w.send(true);
    assert!(out.contains("deduplicated: 1 chunks linked"), "{out}");
    assert!(out.contains("deduplicated: 2 chunks linked"), "{out}");
    let (a1, b1) = (
        w.e.session_names(VA)[1].clone(),
        w.e.session_names(VB)[1].clone(),
    );
    assert_eq!(ino(&w.file(VA, &a1, 13 * CHUNK)), ino(&w.file(VB, &b0, 0)));
    assert_eq!(ino(&w.file(VB, &b1, 0)), ino(&w.file(VA, &a0, 13 * CHUNK)));
    assert_eq!(
        ino(&w.file(VB, &b1, 12 * CHUNK)),
        ino(&w.file(VB, &b1, CHUNK))
    );
    w.check_all();
    // Without --dedup nothing is linked.
    write_at(&w.e.img(VA), 0, &block(301));
    let out = w.send(false);
    assert!(!out.contains("deduplicated"), "{out}");
    let a2 = w.e.session_names(VA)[2].clone();
    assert_eq!(std::fs::metadata(w.file(VA, &a2, 0)).unwrap().nlink(), 1);
    w.check_all();
}

#[test]
fn prune_and_delete_keep_deduplicated_data_valid() {
    let mut w = World::new();
    w.send(true);
    // A second session of each, with links into the first sessions.
    write_at(&w.e.img(VA), 12 * CHUNK, &block(301));
    write_at(&w.e.img(VB), 0, &block(100));
    w.send(true);
    write_at(&w.e.img(VA), 0, &block(5000));
    write_at(&w.e.img(VB), CHUNK, &block(5000));
    w.send(true);
    w.check_all();
    // Prune the oldest (full) session of each volume: it holds link targets
    // of later sessions and of the other volume.
    for v in [VA, VB] {
        let first = w.e.session_names(v)[0].clone();
        w.e.ok(&["-u", "prune", v, &format!("--session={first}")]);
    }
    w.check_all();
    // A further send --dedup after the prune: the index is rebuilt, so links
    // name where the files are now.
    write_at(&w.e.img(VA), 2 * CHUNK, &block(301));
    write_at(&w.e.img(VB), 3 * CHUNK, &block(107));
    let out = w.send(true);
    assert!(out.contains("deduplicated: 1 chunks linked"), "{out}");
    w.check_all();
    // Delete va, which holds link targets of vb: vb still restores.
    w.e.ok(&["-u", "delete", VA]);
    w.hist.remove(VA);
    w.live.retain(|v| *v != VA);
    assert!(!w.e.vol_archive_dir(VA).exists());
    w.check_all();
    // And a send --dedup without va still works.
    write_at(&w.e.img(VB), 4 * CHUNK, &block(301));
    write_at(&w.e.img(VB), 5 * CHUNK, &block(104));
    let out = w.send(true);
    assert!(out.contains("deduplicated: 2 chunks linked"), "{out}");
    w.check_all();
    // Prune every session of vb but the newest.
    w.e.ok(&["-u", "prune", VB, "--keep-last=1"]);
    assert_eq!(w.e.session_names(VB).len(), 1);
    w.check_all();
}

#[test]
fn arch_deduplicate_links_an_archive_sent_without_dedup_and_is_idempotent() {
    let mut w = World::new();
    w.send(false);
    write_at(&w.e.img(VB), 0, &block(7));
    w.send(false);
    let (files, inodes, bytes) = usage(&w.e.archive_dir());
    assert_eq!(files, inodes, "nothing linked yet");
    let out = w.e.ok(&["-u", "arch-deduplicate"]);
    // va: 3 repeats; vb session 1: 8 shared + 1 repeat; vb session 2: 1.
    assert!(
        out.contains("13 duplicates, 13 replaced by hard links, 0 already linked"),
        "{out}"
    );
    let (files2, inodes2, bytes2) = usage(&w.e.archive_dir());
    assert_eq!(files2, files);
    assert_eq!(inodes2, inodes - 13);
    assert!(bytes2 < bytes);
    let saved = format!("{} saved", human(bytes - bytes2));
    assert!(out.contains(&saved), "{out} lacks {saved}");
    w.check_all();
    let out = w.e.ok(&["-u", "arch-deduplicate"]);
    assert!(
        out.contains("13 duplicates, 0 replaced by hard links, 13 already linked; 0 B saved"),
        "{out}"
    );
    assert_eq!(usage(&w.e.archive_dir()), (files2, inodes2, bytes2));
    // send --dedup afterwards links to the deduplicated files.
    write_at(&w.e.img(VA), 0, &block(300));
    let out = w.send(true);
    assert!(out.contains("deduplicated: 1 chunks linked"), "{out}");
    w.check_all();
}

/// `Bytes` as sparsebak prints it.
fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[test]
fn arch_deduplicate_never_replaces_a_good_duplicate_by_a_damaged_kept_copy() {
    let mut w = World::new();
    w.send(false);
    let (a0, b0) = (
        w.e.session_names(VA)[0].clone(),
        w.e.session_names(VB)[0].clone(),
    );
    // Damage va's copy of shared block 0 (the kept one: va's session is older
    // or, at the same second, sorts first).
    let kept = w.file(VA, &a0, 0);
    let dup = w.file(VB, &b0, 2 * CHUNK);
    let good = std::fs::read(&dup).unwrap();
    let mut bad = std::fs::read(&kept).unwrap();
    bad[20] ^= 0xff;
    std::fs::write(&kept, &bad).unwrap();
    let out = w.e.run(&["-u", "arch-deduplicate"]);
    out.expect(
        3,
        &["is damaged", "was not replaced", "run `sparsebak verify`"],
    );
    assert!(
        out.stderr.contains(&kept.display().to_string()),
        "{}",
        out.stderr
    );
    assert_ne!(ino(&kept), ino(&dup));
    assert_eq!(std::fs::read(&dup).unwrap(), good);
    // Everything else was linked, and vb restores completely.
    assert!(
        out.stdout
            .contains("12 duplicates, 11 replaced by hard links"),
        "{}",
        out.stdout
    );
    let got = w.e.receive_sha(VB, None, "vb.img");
    assert_eq!(got, w.hist[VB][&b0]);
    w.e.run(&["verify", VA]).expect(3, &["damaged"]);
    // send --dedup never links to the damaged file: the agent fails that
    // session naming the file, and sparsebak sends the volume again without
    // linking to it, so a damaged file does not stop every later backup.
    write_at(&w.e.img(VB), 0, &block(100));
    write_at(&w.e.img(VB), 11 * CHUNK, &block(100));
    let n = w.e.session_names(VB).len();
    let out = w.e.run(&["-u", "send", "--dedup", VB]);
    out.expect(
        0,
        &[
            "is damaged",
            &kept.display().to_string(),
            "sending volume vb again",
        ],
    );
    assert!(
        out.stdout.contains("deduplicated: 1 chunks linked"),
        "{}",
        out.stdout
    );
    let names = w.e.session_names(VB);
    assert_eq!(names.len(), n + 1);
    let b1 = names[n].clone();
    let fresh = w.file(VB, &b1, 0);
    assert_ne!(ino(&fresh), ino(&kept));
    assert_eq!(
        ino(&w.file(VB, &b1, 11 * CHUNK)),
        ino(&fresh),
        "repeats link to the fresh copy"
    );
    assert_eq!(std::fs::read(&fresh).unwrap(), good);
    let got = w.e.receive_sha(VB, Some(&b1), "vb1.img");
    assert_eq!(got, sha256_file(&w.e.img(VB)));
}

#[test]
fn dedup_is_refused_where_the_option_makes_no_sense() {
    let w = World::new();
    w.e.run(&["list", "--dedup"])
        .expect(2, &["unexpected argument '--dedup'"]);
}

/// exFAT has no hard links: send --dedup and arch-deduplicate fail before
/// anything is sent, with a message that says so; a plain send still works.
#[test]
fn a_destination_without_hard_links_is_refused_before_anything_is_sent() {
    if !have_root("a_destination_without_hard_links_is_refused_before_anything_is_sent") {
        return;
    }
    let tools = ["mkfs.exfat", "mount.exfat-fuse"];
    if tools.iter().any(|t| {
        !sh("sh", &["-c", &format!("command -v {t}")])
            .status
            .success()
    }) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("exfat-fuse/exfatprogs are missing (tests/setup-host.sh installs them)");
        }
        eprintln!("\n*** SKIPPED exFAT test: install exfat-fuse and exfatprogs ***\n");
        return;
    }
    let e = Env::new();
    let img = e.path("exfat.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    let lo = Loop::new(&img);
    sh_ok("mkfs.exfat", &[&lo.0.to_string_lossy()]);
    let mnt = e.path("mnt");
    std::fs::create_dir(&mnt).unwrap();
    sh_ok(
        "mount.exfat-fuse",
        &[&lo.0.to_string_lossy(), &mnt.to_string_lossy()],
    );
    let _m = Mount(mnt.clone());
    let dest = mnt.join("archive");
    std::fs::create_dir(&dest).unwrap();
    let [d, s] = Env::dest_args(&dest);
    let source = format!("--source=dir:{}", e.src.display());
    e.ok(&["arch-init", &d, &s, &source, "--encrypt=off"]);
    write_file(&e.img(VA), &random_bytes(4 * CHUNK, 1));
    e.ok(&["add", VA]);
    let out = e.run(&["-u", "send", "--dedup"]);
    out.expect(1, &["does not support hard links (needed by --dedup)"]);
    assert!(
        out.stderr
            .contains(&dest.join("sparsebak").display().to_string()),
        "{}",
        out.stderr
    );
    let vols = dest.join("sparsebak").join("volumes");
    assert_eq!(
        std::fs::read_dir(&vols).unwrap().count(),
        0,
        "something was sent"
    );
    assert!(e.session_names(VA).is_empty());
    e.run(&["-u", "arch-deduplicate"])
        .expect(1, &["does not support hard links"]);
    e.ok(&["-u", "send"]);
    let got = e.receive_sha(VA, None, "va.img");
    assert_eq!(got, sha256_file(&e.img(VA)));
    drop(_m);
}

/// A prune of va killed after the destination merged but before dom0 did:
/// dom0's manifests still name files the destination has moved. `send
/// --dedup vb` indexes every volume, so it completes va's prune first and
/// links to where the files are now.
#[test]
fn send_dedup_completes_an_interrupted_prune_of_another_volume_first() {
    let mut w = World::new();
    w.send(true);
    write_at(&w.e.img(VA), 0, &block(4000));
    w.send(true);
    let first = w.e.session_names(VA)[0].clone();
    let o = run_sparsebak(
        &["-u", "prune", VA, &format!("--session={first}")],
        &w.e.meta,
        &[("SPARSEBAK_TEST_CRASH_AT", "agent-done")],
    );
    assert_ne!(o.code, 0, "the test hook did not stop the prune: {o:#?}");
    assert!(w.e.meta.join("volumes").join(VA).join(".prune").exists());
    // va's own block 200 is only in the pruned session (moved on the
    // destination, not yet in dom0's manifests).
    write_at(&w.e.img(VB), 0, &block(200));
    let out = w.e.ok(&["-u", "send", "--dedup", VB]);
    assert!(out.contains("deduplicated: 1 chunks linked"), "{out}");
    let last = w.e.session_names(VB).last().unwrap().clone();
    w.hist
        .get_mut(VB)
        .unwrap()
        .insert(last, sha256_file(&w.e.img(VB)));
    assert_eq!(w.e.session_names(VA).len(), 1, "va's prune was completed");
    w.check_all();
}

/// Tar sessions and deduplication: `--dedup --tarfile` is a usage error; a
/// tar session is never a link target; a folder session that inherits tar
/// parts in a prune becomes `tar`, so a later `send --dedup` never links to
/// a chunk that is not a plain file; every session restores throughout.
#[test]
fn dedup_never_links_into_tar_sessions_or_inherited_tar_parts() {
    let mut w = World::new();
    w.e.run(&["-u", "send", "--dedup", "--tarfile"])
        .expect(2, &["--tarfile"]);
    // va: a tar full session, then a folder session changing one chunk.
    w.e.ok(&["-u", "send", "--tarfile", VA]);
    let h = w.hist.entry(VA.into()).or_default();
    let s0 = w.e.session_names(VA)[0].clone();
    h.insert(s0.clone(), sha256_file(&w.e.img(VA)));
    write_at(&w.e.img(VA), 0, &block(6000));
    let out = w.e.ok(&["-u", "send", "--dedup", VA]);
    assert!(out.contains("deduplicated: 0 chunks linked"), "{out}");
    let s1 = w.e.session_names(VA)[1].clone();
    w.hist
        .get_mut(VA)
        .unwrap()
        .insert(s1.clone(), sha256_file(&w.e.img(VA)));
    let formats: Vec<String> =
        w.e.sessions(VA)
            .iter()
            .map(|s| s["format"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(formats, ["tar", "folders"]);
    w.check_all();
    // Prune the tar session into the folder one: it inherits a tar part.
    w.e.ok(&["-u", "prune", VA, &format!("--session={s0}")]);
    let after = w.e.sessions(VA);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["format"], "tar", "the target now holds a tar part");
    w.hist.get_mut(VA).unwrap().remove(&s0);
    w.check_all();
    // vb shares 8 blocks with va, which now sit in va's inherited tar part:
    // none may be linked.
    let out = w.send(true);
    assert!(out.contains("deduplicated: 0 chunks linked"), "{out}");
    let vb = w.e.session_names(VB)[0].clone();
    for i in 0..8u64 {
        assert_eq!(
            std::fs::metadata(w.file(VB, &vb, (2 + i) * CHUNK))
                .unwrap()
                .nlink(),
            1,
            "vb chunk {i} must be its own file"
        );
    }
    w.check_all();
}

/// FORMAT.md §12.6: a chunk file the agent finds damaged when asked to link
/// to it must not stop the backup. The agent's refusal names the file in its
/// typed `damaged` field; dom0 sends the volume again without linking to it,
/// and the new session restores exactly.
#[test]
fn send_dedup_steps_around_a_damaged_link_target() {
    let mut w = World::new();
    w.send(false);
    let (a0, b0) = (
        w.e.session_names(VA)[0].clone(),
        w.e.session_names(VB)[0].clone(),
    );
    // Both copies of block(100) rot on the destination (va at 0, vb at 2).
    let good = std::fs::read(w.file(VB, &b0, 2 * CHUNK)).unwrap();
    for f in [w.file(VA, &a0, 0), w.file(VB, &b0, 2 * CHUNK)] {
        let mut data = std::fs::read(&f).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0x55;
        std::fs::write(&f, &data).unwrap();
    }
    // vb gets one more copy of block(100): --dedup would link it.
    write_at(&w.e.img(VB), 0, &block(100));
    let sha = sha256_file(&w.e.img(VB));
    let o = w.e.run(&["-u", "send", VB, "--dedup"]);
    o.expect(
        0,
        &[
            "is damaged",
            "sending volume vb again without linking to it",
        ],
    );
    let b1 = w.e.session_names(VB)[1].clone();
    // vb's older copy is repaired (it is in vb's chain); va's stays damaged,
    // and nothing of vb's new session may depend on it.
    std::fs::write(w.file(VB, &b0, 2 * CHUNK), good).unwrap();
    assert_eq!(w.e.receive_sha(VB, Some(&b1), "r-vb"), sha);
    // The new session's copy is a file of its own, not a link to a bad one.
    let f = w.file(VB, &b1, 0);
    assert_ne!(ino(&f), ino(&w.file(VA, &a0, 0)));
    assert_ne!(ino(&f), ino(&w.file(VB, &b0, 2 * CHUNK)));
}
