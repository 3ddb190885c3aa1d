//! Reflink sources (`--source=reflink:`) on real Btrfs and real XFS, each
//! on a loop device: the scenario list of the LVM suite (tests/vm/): exact
//! changed-chunk counts after writes (monitor and send), rotation of the
//! copies, growth and shrink, Qubes' own commit of a running qube (a
//! `-dirty.img` renamed over the image), kill -9 at every step of a
//! harvest and after a session is committed, diff and diff --remap,
//! receive into the pool, delete; every session restores equal by sha256.
//!
//! Root only (loop devices, mounts): skipped loudly otherwise, a failure in
//! CI. mkfs.btrfs and mkfs.xfs come from tests/setup-host.sh.

use crate::common::*;
use std::path::{Path, PathBuf};

const DOM0_AT: &str = "SPARSEBAK_TEST_CRASH_AT";
const WORK: &str = "vm-work-private";
const TPL: &str = "vm-fed-root";

/// A file system on a loop device, mounted at `dir`; unmounted, then
/// detached, when dropped.
struct Pool {
    _mount: Mount,
    _lo: Loop,
    dir: PathBuf,
}

/// A mounted `fs` (btrfs, xfs) pool in `e`, laid out as Qubes does, or
/// `None` (skipped loudly) without root or tools.
fn pool(e: &Env, fs: &str, test: &str) -> Option<Pool> {
    pool_with(e, fs, test, &[])
}

/// The same, mounted with `opts` (`-o ...`).
fn pool_with(e: &Env, fs: &str, test: &str, opts: &[&str]) -> Option<Pool> {
    if !have_root(test) {
        return None;
    }
    let mkfs = format!("mkfs.{fs}");
    if !sh("sh", &["-c", &format!("command -v {mkfs}")])
        .status
        .success()
    {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{mkfs} is missing (tests/setup-host.sh installs it)");
        }
        eprintln!("\n*** SKIPPED {test}: install {mkfs} ***\n");
        return None;
    }
    let backing = e.path(&format!("{fs}.fs"));
    // XFS wants 300 MB at least; the file is sparse.
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(320 * MIB)
        .unwrap();
    let lo = Loop::new(&backing);
    sh_ok(&mkfs, &["-q", "-f", &lo.0.to_string_lossy()]);
    let dir = e.path(&format!("pool-{fs}"));
    std::fs::create_dir(&dir).unwrap();
    let (dev, d) = (lo.0.to_string_lossy(), dir.to_string_lossy());
    let mut args: Vec<&str> = opts.to_vec();
    args.extend([&*dev, &*d]);
    sh_ok("mount", &args);
    let m = Mount(dir.clone());
    for d in ["appvms/work", "vm-templates/fed"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    Some(Pool {
        _mount: m,
        _lo: lo,
        dir,
    })
}

impl Pool {
    fn work(&self) -> PathBuf {
        self.dir.join("appvms/work/private.img")
    }
    fn tpl(&self) -> PathBuf {
        self.dir.join("vm-templates/fed/root.img")
    }
    /// sparsebak's copies in the pool.
    fn copies(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join(".sparsebak")) {
            for d in rd.flatten() {
                for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                    v.push(f.file_name().to_string_lossy().into_owned());
                }
            }
        }
        v.sort();
        v
    }
}

fn init(e: &Env, p: &Pool) {
    let [d, s] = Env::dest_args(&e.dest);
    let source = format!("--source=reflink:{}", p.dir.display());
    e.ok(&["arch-init", &d, &s, &source, "--encrypt=off"]);
}

/// The chunks a send of `vol` reports changed (0 for "no changes").
fn sent_changed(out: &str, vol: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("Volume {vol}:")))
        .unwrap_or_else(|| panic!("no report for {vol}: {out}"));
    if line.contains("no changes") {
        return 0;
    }
    let n = line.split("— ").nth(1).expect("chunk count");
    n.split(' ').next().unwrap().parse().unwrap()
}

/// What monitor reports for `vol`: (harvested, pending).
fn monitored(out: &str, vol: &str) -> (u64, u64) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{vol}: ")))
        .unwrap_or_else(|| panic!("no monitor line for {vol}: {out}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// Every session received equals the image it was sent from.
fn check_sessions(e: &Env, vol: &str, want: &[String]) {
    let names = e.session_names(vol);
    assert_eq!(names.len(), want.len(), "sessions of {vol}: {names:?}");
    for (i, (s, sha)) in names.iter().zip(want).enumerate() {
        let got = e.receive_sha(vol, Some(s), &format!("r-{vol}-{i}.img"));
        assert_eq!(&got, sha, "{vol} session {s} restores other bytes");
    }
}

/// Write and sync, as a qube's disk writes reach the image.
fn write_sync(p: &Path, off: u64, data: &[u8]) {
    write_at(p, off, data);
    std::fs::File::open(p).unwrap().sync_all().unwrap();
}

fn scenario(fs: &str, opts: &[&str]) {
    let test = format!("reflink::{fs}_sessions {opts:?}");
    let e = Env::new();
    let Some(p) = pool_with(&e, fs, &test, opts) else {
        return;
    };
    init(&e, &p);
    write_file(&p.work(), &realistic_bytes(8 * MIB + 1000, 1));
    write_file(&p.tpl(), &realistic_bytes(4 * MIB, 2));
    e.ok(&["add", WORK]);
    e.ok(&["add", TPL]);
    let out = e.ok(&["monitor"]);
    assert!(out.contains(&format!("{WORK}: not sent yet")), "{out}");
    let mut shas = vec![sha256_file(&p.work())];
    let out = e.ok(&["send"]);
    assert_eq!(sent_changed(&out, WORK), 129, "{out}");
    assert_eq!(p.copies().len(), 2, "one tick per volume: {:?}", p.copies());

    // Writes: a byte, a block across two chunks, a chunk; monitor counts
    // exactly them, a second harvest adds one, send stores exactly those.
    let writes = [(5, 1), (2 * CHUNK - 100, 4096), (7 * CHUNK, CHUNK)];
    for (i, &(off, len)) in writes.iter().enumerate() {
        write_sync(&p.work(), off, &random_bytes(len, 10 + i as u64));
    }
    let out = e.ok(&["monitor"]);
    assert_eq!(monitored(&out, WORK), (4, 4), "{out}");
    assert_eq!(monitored(&out, TPL), (0, 0), "{out}");
    write_sync(&p.work(), 100 * CHUNK + 7, b"later");
    let out = e.ok(&["monitor", WORK]);
    assert_eq!(monitored(&out, WORK), (1, 5), "{out}");
    let out = e.ok(&["send"]);
    assert_eq!(sent_changed(&out, WORK), 5, "{out}");
    assert_eq!(sent_changed(&out, TPL), 0, "{out}");
    shas.push(sha256_file(&p.work()));
    assert_eq!(
        p.copies().len(),
        2,
        "rotated, not piled up: {:?}",
        p.copies()
    );

    qubes_commit(&e, &p, &mut shas);
    growth_and_shrink(&e, &p, &mut shas);
    check_sessions(&e, WORK, &shas);
    diff_and_remap(&e, &p);
    receive_into_pool(&e, &p);
    let out = e.ok(&["-u", "delete", TPL]);
    assert!(out.contains("Removed snapshot"), "{out}");
    assert_eq!(p.copies().len(), 1, "{:?}", p.copies());
    // arch-delete leaves nothing of sparsebak's in the pool.
    let uuid = e.config()["uuid"].as_str().unwrap().to_string();
    let out = crate::prune_support::run_tty(&e, &["arch-delete"], &format!("{uuid}\n"));
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!p.dir.join(".sparsebak").exists(), "{:?}", p.copies());
    assert!(p.work().is_file(), "the images stay");
}

/// A running qube writes `-dirty.img` (a reflink copy); the committed image
/// is backed up, with a warning; Qubes' commit (rename over the image) is
/// then tracked by extents like any write.
fn qubes_commit(e: &Env, p: &Pool, shas: &mut Vec<String>) {
    let dirty = p.dir.join("appvms/work/private-dirty.img");
    sh_ok(
        "cp",
        &[
            "--reflink=always",
            &p.work().to_string_lossy(),
            &dirty.to_string_lossy(),
        ],
    );
    write_sync(&dirty, 30 * CHUNK, &random_bytes(3 * CHUNK, 20));
    let o = e.run(&["send", WORK]);
    o.expect(0, &["private-dirty.img exists: the qube is running"]);
    assert_eq!(sent_changed(&o.stdout, WORK), 0, "{o:#?}");
    std::fs::rename(&dirty, p.work()).unwrap();
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 3, "{out}");
    shas.push(sha256_file(&p.work()));
}

fn growth_and_shrink(e: &Env, p: &Pool, shas: &mut Vec<String>) {
    // 8 MiB + 1000 → 9 MiB + 5: the partial chunk and 16 new ones.
    set_len(&p.work(), 9 * MIB + 5);
    write_sync(&p.work(), 9 * MIB, b"tail!");
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 17, "{out}");
    shas.push(sha256_file(&p.work()));
    // Shrink to 6 MiB + 10: only the new last chunk changes.
    set_len(&p.work(), 6 * MIB + 10);
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 1, "{out}");
    shas.push(sha256_file(&p.work()));
    // Grown back with zeros: every chunk past the old end.
    set_len(&p.work(), 7 * MIB);
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 16, "{out}");
    shas.push(sha256_file(&p.work()));
}

/// diff compares with the tick; a lost change map is rebuilt by
/// diff --remap, after which send stores only what differs.
fn diff_and_remap(e: &Env, p: &Pool) {
    let out = e.ok(&["diff", WORK]);
    assert!(out.contains("0 of 112 chunks differ"), "{out}");
    let map = e.meta.join("volumes").join(WORK).join("deltamap");
    std::fs::remove_file(&map).unwrap();
    write_sync(&p.work(), 3 * CHUNK + 1, b"after the map was lost");
    let out = e.ok(&["diff", WORK, "--remap"]);
    assert!(out.contains("differs: chunk 0x30000\n"), "{out}");
    assert!(out.contains("1 of 112 chunks differ"), "{out}");
    assert!(out.contains("1 chunks flagged"), "{out}");
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 1, "{out}");
    let sha = sha256_file(&p.work());
    assert_eq!(e.receive_sha(WORK, None, "after-remap.img"), sha);
}

/// Receive into an image of the pool: complete, and sparse where the
/// session holds zero chunks.
fn receive_into_pool(e: &Env, p: &Pool) {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(p.dir.join("appvms/restored")).unwrap();
    let target = p.dir.join("appvms/restored/private.img");
    let save = format!("--save-to={}", target.display());
    e.ok(&["receive", WORK, &save]);
    assert_eq!(sha256_file(&target), sha256_file(&p.work()));
    let m = std::fs::metadata(&target).unwrap();
    assert!(
        m.blocks() * 512 < m.len(),
        "zero chunks were written: {} of {} bytes allocated",
        m.blocks() * 512,
        m.len()
    );
    // Into the volume's own image (the qube shut down): the restored image
    // becomes the baseline, so the next send has nothing to store, and the
    // one after a write stores that write only.
    let want = sha256_file(&p.work());
    write_sync(&p.work(), 0, &random_bytes(3 * CHUNK, 99));
    let own = format!("--save-to={}", p.work().display());
    e.ok(&["-u", "receive", WORK, &own]);
    assert_eq!(sha256_file(&p.work()), want);
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 0, "{out}");
    write_sync(&p.work(), 9 * CHUNK, b"after the restore");
    let out = e.ok(&["send", WORK]);
    assert_eq!(sent_changed(&out, WORK), 1, "{out}");
    assert_eq!(
        e.receive_sha(WORK, None, "after-own.img"),
        sha256_file(&p.work())
    );
    let copies = p.dir.join(".sparsebak");
    let uuid = std::fs::read_dir(&copies).unwrap().next().unwrap().unwrap();
    let bad = format!("--save-to={}", uuid.path().join("x.img").display());
    e.run(&["-u", "receive", WORK, &bad])
        .expect(1, &["sparsebak's reflink copies"]);
}

#[test]
fn btrfs_sessions() {
    scenario("btrfs", &[]);
}

#[test]
fn xfs_sessions() {
    scenario("xfs", &[]);
}

/// Compressed extents (FIEMAP_EXTENT_ENCODED) prove nothing by address:
/// they are compared by content, and the counts are the same exact ones.
#[test]
fn btrfs_compressed_sessions() {
    scenario("btrfs", &["-o", "compress-force=zstd"]);
}

/// A pool on a file system without reflinks (tmpfs): send fails naming the
/// image and saying what to do; nothing is left in the pool.
#[test]
fn a_file_system_without_reflinks_is_refused() {
    if !have_root("reflink::a_file_system_without_reflinks_is_refused") {
        return;
    }
    let e = Env::new();
    let dir = e.path("tmpfs-pool");
    let _m = Mount::tmpfs(&dir, "64m");
    std::fs::create_dir_all(dir.join("appvms/work")).unwrap();
    write_file(
        &dir.join("appvms/work/private.img"),
        &random_bytes(CHUNK, 1),
    );
    let [d, s] = Env::dest_args(&e.dest);
    let source = format!("--source=reflink:{}", dir.display());
    e.ok(&["arch-init", &d, &s, &source, "--encrypt=off"]);
    e.ok(&["add", WORK]);
    e.run(&["send"]).expect(
        1,
        &[
            "cannot make a reflink copy of",
            "appvms/work/private.img",
            "must support reflinks",
            "--source=dir:",
        ],
    );
    let left: Vec<_> = walk(&dir.join(".sparsebak"));
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(e.session_names(WORK).is_empty());
}

/// Every file under `d`.
fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for x in rd.flatten() {
            if x.path().is_dir() {
                out.extend(walk(&x.path()));
            } else {
                out.push(x.path());
            }
        }
    }
    out
}

/// kill -9 (abort) at every step of a harvest, in send and in monitor, and
/// after a session is committed: the next run completes, no change is
/// missed, one copy remains, every session restores equal.
fn crashes(fs: &str) {
    let test = format!("reflink::{fs}_killed_at_each_step");
    let e = Env::new();
    let Some(p) = pool(&e, fs, &test) else { return };
    init(&e, &p);
    write_file(&p.work(), &realistic_bytes(4 * MIB, 3));
    e.ok(&["add", WORK]);
    e.ok(&["send"]);
    let mut shas = vec![sha256_file(&p.work())];
    let points = [
        "reflink-tock",
        "reflink-map",
        "reflink-promoted",
        "reflink-sent",
    ];
    for (i, point) in points.iter().enumerate() {
        for cmd in ["monitor", "send"] {
            if cmd == "monitor" && *point == "reflink-sent" {
                continue;
            }
            let i = i as u64;
            write_sync(&p.work(), (10 + i) * CHUNK, &random_bytes(100, 30 + i));
            let o = run_sparsebak(&[cmd], &e.meta, &[(DOM0_AT, point)]);
            assert_ne!(o.code, 0, "{cmd} with {point} did not crash: {o:#?}");
            assert!(o.stderr.contains("test hook"), "{o:#?}");
            // The crashed run's agent may still hold the archive's lock.
            let o = crate::prune_support::run_when_unlocked(&e, &["send"]);
            assert_eq!(o.code, 0, "send after {cmd} at {point}: {o:#?}");
            let out = o.stdout;
            // The chunk written before the crash is stored now, unless the
            // crashed run was a send that committed it already (it is
            // stored again: the map still flagged it).
            assert_eq!(sent_changed(&out, WORK), 1, "{cmd} at {point}: {out}");
            shas.push(sha256_file(&p.work()));
            assert_eq!(p.copies().len(), 1, "{cmd} at {point}: {:?}", p.copies());
            if cmd == "send" && *point == "reflink-sent" {
                // The crashed send committed a session too.
                shas.insert(shas.len() - 1, shas[shas.len() - 1].clone());
            }
        }
    }
    check_sessions(&e, WORK, &shas);
}

#[test]
fn btrfs_killed_at_each_step() {
    crashes("btrfs");
}

#[test]
fn xfs_killed_at_each_step() {
    crashes("xfs");
}

/// 1 % of a 64 MiB image changed: the send reads a small part of it (the
/// copies' extent maps say where), not the image.
#[test]
fn an_incremental_send_reads_what_changed() {
    let e = Env::new();
    let Some(p) = pool(
        &e,
        "btrfs",
        "reflink::an_incremental_send_reads_what_changed",
    ) else {
        return;
    };
    init(&e, &p);
    write_file(&p.work(), &random_bytes(64 * MIB, 4));
    e.ok(&["add", WORK]);
    e.ok(&["send"]);
    for i in 0..10u64 {
        write_sync(&p.work(), i * 97 * CHUNK, &random_bytes(CHUNK, 40 + i));
    }
    let (out, read) = crate::sparse_images::run_counting_reads(&e, &["send"]);
    assert_eq!(sent_changed(&out, WORK), 10, "{out}");
    assert!(
        read < 8 * MIB,
        "a 1% incremental send read {read} bytes: {out}"
    );
    assert_eq!(e.receive_sha(WORK, None, "r.img"), sha256_file(&p.work()));
}

mod qubes;
mod qubes_s3;
