//! Shared pieces of the legacy suites: a small archive, failure checks and
//! a content snapshot of a directory tree.

use super::super::common::*;
use super::*;
use sparsebak_testing::tree::{self, Kind};
use std::fs;
use std::path::Path;

const K64: u64 = 64 * 1024;

/// An environment with only vm-sys-root (three sessions), for damage tests.
pub fn small(env: &Env) -> Legacy {
    let cs = K64;
    let mut l = Legacy::new(&env.meta, &env.dest, cs, false);
    let mut img = image(12 * cs, cs, 6);
    assert!(l.send("vm-sys-root", "20190601-120000", &img));
    touch(&mut img, cs, 2, 1, 3, 61);
    assert!(l.send("vm-sys-root", "20190602-120000", &img));
    touch(&mut img, cs, 9, 1, 1, 62);
    assert!(l.send("vm-sys-root", "20190603-120000", &img));
    l
}

/// receive must fail naming `needles` and leave nothing at --save-to.
pub fn receive_fails(env: &Env, vol: &str, needles: &[&str]) {
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

/// Every file under `root` with its size and content hash.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    // our own single-instance lock in the meta dir
    let lock = root.join("lock");
    let mut out: Vec<(String, String)> = tree::walk(root, |p| p == lock)
        .into_iter()
        .map(|e| {
            let what = match e.kind {
                Kind::Dir => "dir".into(),
                _ => sha256_hex(&e.read()),
            };
            (e.rel.display().to_string(), what)
        })
        .collect();
    out.sort();
    out
}
