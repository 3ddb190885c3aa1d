//! Sparse image files: holes are found with SEEK_DATA/SEEK_HOLE and not
//! read, and that changes nothing but the cost. Every session of a sparse
//! image restores to the bytes it was sent from, and records exactly what
//! the same bytes written out in full (no holes) record: same report
//! figures, byte-identical manifests.

use crate::common::*;
use std::path::Path;

/// Punch a hole (the file keeps its size), as `fallocate --punch-hole` does.
fn punch_hole(p: &Path, off: u64, len: u64) {
    use nix::fcntl::{fallocate, FallocateFlags};
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, mode, off as i64, len as i64).expect("punch a hole");
}

/// The same bytes with every hole written out as zeros.
fn write_dense_copy(sparse: &Path, dense: &Path) {
    write_file(dense, &std::fs::read(sparse).unwrap());
}

/// One change between sessions, applied to the sparse image.
struct Step {
    what: &'static str,
    change: fn(&Path),
}

fn history() -> Vec<Step> {
    vec![
        Step {
            what: "holes at the start, the middle and the end; a chunk half data, half hole; \
                   a size no multiple of the chunk size",
            change: |p| {
                write_file(p, b"");
                set_len(p, 6 * MIB + 12_345);
                write_at(p, MIB, &realistic_bytes(MIB, 1));
                write_at(p, 3 * MIB, &random_bytes(CHUNK / 2, 2));
                write_at(p, 4 * MIB + 100, &text_bytes(3 * CHUNK, 3));
            },
        },
        Step {
            what: "data written into holes (middle and last, partial chunk)",
            change: |p| {
                write_at(p, 2 * MIB + 7, &random_bytes(1000, 4));
                write_at(p, 6 * MIB + 12_000, &random_bytes(345, 5));
            },
        },
        Step {
            what: "data punched out into holes (a whole chunk, half a chunk, across chunks)",
            change: |p| {
                punch_hole(p, MIB, CHUNK);
                punch_hole(p, 3 * MIB, CHUNK / 2);
                punch_hole(p, 4 * MIB + 2 * CHUNK, 2 * CHUNK);
            },
        },
        Step {
            what: "grown by a hole, with a few bytes far out",
            change: |p| {
                set_len(p, 9 * MIB + 777);
                write_at(p, 8 * MIB + 3, b"far out");
            },
        },
        Step {
            what: "shrunk into a hole",
            change: |p| set_len(p, 7 * MIB + 1),
        },
    ]
}

/// The report's figures: "— N chunks changed (Z zero), X stored;".
fn figures(out: &str) -> String {
    let start = out
        .find(" — ")
        .unwrap_or_else(|| panic!("no report: {out}"));
    let end = out[start..].find(';').expect("report") + start;
    out[start..end].to_string()
}

fn manifest(e: &Env, vol: &str, session: &str) -> Vec<u8> {
    let p = e
        .meta
        .join("volumes")
        .join(vol)
        .join(format!("S_{session}"));
    std::fs::read(p.join("manifest")).unwrap()
}

#[test]
fn sparse_sessions_restore_and_match_a_dense_copy() {
    let e = Env::new();
    e.init(&[]);
    let (sparse, dense) = (e.img("sparse"), e.img("dense"));
    for (vol, img) in [("sparse", &sparse), ("dense", &dense)] {
        write_file(img, b"");
        e.ok(&["add", vol]);
    }
    let mut sent = Vec::new();
    for (i, step) in history().iter().enumerate() {
        (step.change)(&sparse);
        write_dense_copy(&sparse, &dense);
        let a = e.ok(&["send", "sparse"]);
        let b = e.ok(&["send", "dense"]);
        assert_eq!(figures(&a), figures(&b), "{}: {a}\n{b}", step.what);
        let (s, d) = (e.session_names("sparse"), e.session_names("dense"));
        assert_eq!(s.len(), i + 1, "{}: {a}", step.what);
        assert_eq!(
            manifest(&e, "sparse", &s[i]),
            manifest(&e, "dense", &d[i]),
            "{}",
            step.what
        );
        sent.push((sha256_file(&sparse), step.what));
    }
    let out = e.ok(&["send", "sparse"]);
    assert!(out.contains("Volume sparse: no changes"), "{out}");
    for (i, (name, (sha, what))) in e.session_names("sparse").iter().zip(&sent).enumerate() {
        let got = e.receive_sha("sparse", Some(name), &format!("restored-{i}"));
        assert_eq!(&got, sha, "session {name}: {what}");
    }
}

/// Bytes the process read (`rchar` of /proc/PID/io: every read and pread),
/// taken after it exited and before it is reaped.
pub fn run_counting_reads(e: &Env, args: &[&str]) -> (String, u64) {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let out = e.path("out.txt");
    let mut child = std::process::Command::new(sparsebak_bin())
        .args(args)
        .env("SPARSEBAK_META_DIR", &e.meta)
        .env("SPARSEBAK_AGENT", agent_bin())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .expect("cannot start sparsebak");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).expect("waitid");
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    assert!(child.wait().unwrap().success(), "sparsebak {args:?} failed");
    let rchar = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .expect("rchar")
        .parse()
        .unwrap();
    (std::fs::read_to_string(out).unwrap(), rchar)
}

/// A 4 GiB image holding 3 MiB: its send reads a few MiB, not 4 GiB.
#[test]
fn a_sparse_image_send_reads_only_its_data() {
    let e = Env::new();
    e.init(&[]);
    let img = e.img("big");
    write_file(&img, b"");
    set_len(&img, 4 << 30);
    for (i, off) in [0u64, 1 << 30, (4 << 30) - MIB].into_iter().enumerate() {
        write_at(&img, off, &random_bytes(MIB, 10 + i as u64));
    }
    e.ok(&["add", "big"]);
    let (out, read) = run_counting_reads(&e, &["send", "big"]);
    assert!(out.contains("65536 chunks changed (65488 zero)"), "{out}");
    assert!(read < 64 * MIB, "a full send read {read} bytes: {out}");
    // The next send compares with the manifest and reads the data again,
    // still not the holes.
    write_at(&img, 2 << 30, b"new");
    let (out, read) = run_counting_reads(&e, &["send", "big"]);
    assert!(out.contains("1 chunks changed (0 zero)"), "{out}");
    assert!(
        read < 64 * MIB,
        "an incremental send read {read} bytes: {out}"
    );
    // Restoring is tested above (a 4 GiB receive and its hash would take
    // most of a minute here); the archive must hold what it says.
    e.verify_ok("big");
}
