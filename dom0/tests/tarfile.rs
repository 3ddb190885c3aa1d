//! `send --tarfile`: sessions stored on the destination as one tar file
//! (docs/FORMAT.md §13), mixed with folder sessions. Every session restores
//! to the sha256 of the image it was sent from, verify passes, damage is
//! reported by chunk, and prune works with tar sessions on either side of
//! the merge, including after a crash at any step.

mod common;
mod prune_support;

use common::*;
use prune_support::*;
use std::path::{Path, PathBuf};

const T: bool = true;
const F: bool = false;

fn sdir(h: &Hist, s: &str) -> PathBuf {
    h.e.vol_archive_dir(VOL).join(format!("S_{s}"))
}

fn prune(h: &Hist, args: &[&str]) -> Out {
    let mut a = vec!["prune", VOL, "-u"];
    a.extend_from_slice(args);
    h.e.run(&a)
}

/// Names of the fan-out dirs directly in a session dir.
fn fan_dirs(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 9 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

fn tar_list(p: &Path) -> Vec<String> {
    let out = sh_ok("tar", &["-tf", &p.to_string_lossy()]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn tar_and_folder_sessions_each_restore_exactly() {
    let h = Hist::with_tar(&standard_steps(), &[T, T, F, T, F, T]);
    let names = h.names();
    h.check(&names);
    let sessions = h.e.sessions(VOL);
    for (i, s) in sessions.iter().enumerate() {
        let want = if [0, 1, 3, 5].contains(&i) {
            "tar"
        } else {
            "folders"
        };
        assert_eq!(s["format"], want, "session {i}");
    }
    let list = h.e.ok(&["list", VOL]);
    for (i, line) in list.lines().skip(1).enumerate() {
        assert_eq!(
            line.ends_with(" (tar)"),
            [0, 1, 3, 5].contains(&i),
            "{list}"
        );
    }
    // A tar session holds no chunk files, one tar file any GNU tar lists,
    // with one member per stored chunk, and its index.
    let full = sdir(&h, &names[0]);
    assert!(fan_dirs(&full).is_empty(), "{:?}", fan_dirs(&full));
    let members = tar_list(&full.join("chunks.tar"));
    assert_eq!(
        members.len() as u64,
        sessions[0]["stored_chunks"].as_u64().unwrap()
    );
    assert!(
        members
            .iter()
            .all(|m| m.len() == 9 + 1 + 17 && m.as_bytes()[9] == b'/'),
        "{members:?}"
    );
    let idx = std::fs::metadata(full.join("chunks.idx")).unwrap().len();
    assert_eq!(idx, 16 + 24 * members.len() as u64);
    // A folder session is as before.
    assert!(!sdir(&h, &names[2]).join("chunks.tar").exists());
    assert!(!h.e.chunk_files(VOL, &names[2]).is_empty());
}
