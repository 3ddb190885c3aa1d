//! arch-check (docs/FORMAT.md §17.2) over the in-process agent: a clean
//! archive has no problems; each kind of damage is found and named by
//! volume, session and chunk; chunk damage only with `--data`.

use super::harness::{volume_bytes, World, CHUNK, VOL};
use crate::consistency::report::CheckReport;
use crate::consistency::Kind;
use crate::ops::arch_check::{arch_check, CheckOptions};
use crate::ops::send::{send, SendOptions};
use std::path::{Path, PathBuf};

fn check(w: &World, data: bool) -> CheckReport {
    arch_check(&w.ctx(), &w.ui, &CheckOptions { data }).unwrap()
}

/// Three sessions of [`VOL`].
fn world(seed: u64) -> World {
    let w = World::thin(volume_bytes(8, seed));
    for i in 0..3 {
        w.lvm.write(VOL, i * CHUNK + 3, &[i as u8 + 1; 200]);
        send(&w.ctx(), &w.ui, &SendOptions::default()).unwrap();
    }
    w
}

fn sdir(w: &World, i: usize) -> PathBuf {
    let s = &w.sessions()[i];
    w.path("archive/sparsebak/volumes")
        .join(VOL)
        .join(s.as_str())
}

/// The chunk files of session `i`, in address order.
fn chunk_files(w: &World, i: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(sdir(w, i)).unwrap().flatten() {
        if d.path().is_dir() {
            out.extend(
                std::fs::read_dir(d.path())
                    .unwrap()
                    .map(|f| f.unwrap().path()),
            );
        }
    }
    out.sort();
    out
}

fn addr_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// The report has exactly these problems: (kind, session index or none,
/// chunk or none, words of the message).
fn expect(w: &World, r: &CheckReport, want: &[(Kind, Option<usize>, Option<String>, &str)]) {
    let s = w.sessions();
    let got: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(r.problems.len(), want.len(), "{got:#?}");
    assert_eq!(r.problem_count, want.len() as u64);
    for (p, (kind, sess, chunk, words)) in r.problems.iter().zip(want) {
        assert_eq!(p.kind, *kind, "{p}");
        assert_eq!(p.session.as_ref(), sess.map(|i| &s[i]), "{p}");
        assert_eq!(&p.chunk, chunk, "{p}");
        assert!(p.message.contains(words), "{words:?} not in {p}");
        assert!(p.to_string().starts_with(&format!("volume {VOL}")), "{p}");
    }
}

#[test]
fn a_clean_archive_has_no_problems_and_data_reads_every_stored_file_once() {
    let w = world(1);
    let r = check(&w, false);
    assert_eq!((r.volumes, r.sessions, r.manifests), (1, 3, 3));
    assert_eq!((r.chunk_files, r.problem_count), (0, 0));
    let r = check(&w, true);
    let stored: u64 = (0..3).map(|i| chunk_files(&w, i).len() as u64).sum();
    assert_eq!(
        (r.chunk_files, r.problem_count),
        (stored, 0),
        "{:?}",
        r.problems
    );
    let bytes: u64 = (0..3)
        .flat_map(|i| chunk_files(&w, i))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(r.chunk_bytes, bytes);
}

#[test]
fn damaged_chunk_files_are_named_by_volume_session_and_chunk_with_data_only() {
    let w = world(2);
    let f0 = chunk_files(&w, 0);
    let f1 = chunk_files(&w, 1);
    let f2 = chunk_files(&w, 2);
    // A bit flip, a truncation, an oversized file, a symlink, a removal.
    let mut b = std::fs::read(&f0[0]).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x10;
    std::fs::write(&f0[0], &b).unwrap();
    let b = std::fs::read(&f0[1]).unwrap();
    std::fs::write(&f0[1], &b[..b.len() - 7]).unwrap();
    std::fs::write(&f1[0], vec![7u8; CHUNK + CHUNK / 64 + 4097]).unwrap();
    let outside = w.path("outside");
    std::fs::rename(&f2[0], &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &f2[0]).unwrap();
    std::fs::remove_file(&f0[2]).unwrap();

    assert_eq!(check(&w, false).problem_count, 0, "metadata is intact");
    let r = check(&w, true);
    let a = |p: &PathBuf| Some(addr_of(p));
    let mut want = vec![
        (
            Kind::Altered,
            Some(0),
            a(&f0[0]),
            "sha256 is not the manifest's",
        ),
        (Kind::Altered, Some(0), a(&f0[1]), "corrupted or truncated"),
        (
            Kind::Missing,
            Some(0),
            a(&f0[2]),
            "missing on the destination",
        ),
        (
            Kind::Altered,
            Some(1),
            a(&f1[0]),
            "more than the largest chunk file",
        ),
        (
            Kind::Unreadable,
            Some(2),
            a(&f2[0]),
            "the agent refused the chunk file",
        ),
    ];
    want.sort_by(|x, y| (x.1, &x.2).cmp(&(y.1, &y.2)));
    expect(&w, &r, &want);
}

#[test]
fn damaged_metadata_is_named_by_volume_and_session() {
    let w = world(3);
    let m0 = sdir(&w, 0).join("manifest");
    let mut b = std::fs::read(&m0).unwrap();
    b[10] ^= 1;
    std::fs::write(&m0, &b).unwrap();
    let m1 = sdir(&w, 1).join("manifest");
    let mut b = std::fs::read(&m1).unwrap();
    b.extend_from_slice(&vec![b'0'; 148 * 9]);
    std::fs::write(&m1, &b).unwrap();
    let m2 = sdir(&w, 2).join("manifest");
    std::fs::rename(&m2, w.path("m2")).unwrap();
    std::os::unix::fs::symlink(w.path("m2"), &m2).unwrap();
    // A volume dom0 does not know.
    std::fs::create_dir(w.path("archive/sparsebak/volumes/ghost")).unwrap();
    let r = check(&w, false);
    let s = w.sessions();
    let got: Vec<String> = r.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(r.problem_count, 4, "{got:#?}");
    assert_eq!(r.problems[0].volume.as_str(), "ghost");
    assert_eq!(r.problems[0].kind, Kind::Stale);
    let named = |i: usize, words: &str| {
        let want = format!(
            "volume {VOL}, session {}: manifest {words}",
            s[i].timestamp()
        );
        assert!(
            got.iter().any(|g| g.starts_with(&want)),
            "{want:?} not in {got:#?}"
        );
    };
    named(0, "on the destination differs from dom0's");
    named(1, "is ");
    named(2, "cannot be read");
}

#[test]
fn lost_and_replaced_sessions_are_reported_and_the_rest_still_checked() {
    let w = world(4);
    let s = w.sessions();
    std::fs::remove_dir_all(sdir(&w, 2)).unwrap();
    let info = sdir(&w, 0).join("info.json");
    let mut b = std::fs::read(&info).unwrap();
    b.push(b'\n');
    std::fs::write(&info, b).unwrap();
    let f1 = chunk_files(&w, 1);
    std::fs::write(&f1[0], b"garbage").unwrap();
    let r = check(&w, true);
    expect(
        &w,
        &r,
        &[
            (
                Kind::Altered,
                Some(0),
                None,
                "info.json on the destination differs",
            ),
            (Kind::Missing, Some(2), None, "dom0's newest session"),
            (
                Kind::Altered,
                Some(1),
                Some(addr_of(&f1[0])),
                "corrupted or truncated",
            ),
        ],
    );
    assert_eq!(r.sessions, 2);
    assert_eq!(s.len(), 3);
}
