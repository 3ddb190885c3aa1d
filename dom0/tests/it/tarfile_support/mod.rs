//! Shared by the tar-session suites (`tarfile`, `tarfile_prune`).
#![allow(dead_code)]

use super::common::*;
use super::prune_support::*;
use std::path::{Path, PathBuf};

pub const T: bool = true;
pub const F: bool = false;

pub fn sdir(h: &Hist, s: &str) -> PathBuf {
    h.e.vol_archive_dir(VOL).join(format!("S_{s}"))
}

pub fn prune(h: &Hist, args: &[&str]) -> Out {
    let mut a = vec!["prune", VOL, "-u"];
    a.extend_from_slice(args);
    h.e.run(&a)
}

/// Names of the fan-out dirs directly in a session dir.
pub fn fan_dirs(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 9 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

pub fn tar_list(p: &Path) -> Vec<String> {
    let out = sh_ok("tar", &["-tf", &p.to_string_lossy()]);
    out.lines().map(str::to_string).collect()
}

/// Prune `sel` (indices into the current chain) with `args`; every session
/// left restores exactly as before and verify passes.
pub fn prune_ok(h: &Hist, args: &[&str], sel: std::ops::RangeInclusive<usize>) -> Vec<String> {
    let names = h.names();
    let out = prune(h, args);
    assert_eq!(out.code, 0, "{args:?}: {out:#?}");
    let left = h.without(&names, sel);
    h.check(&left);
    left
}

pub fn range(names: &[String], a: usize, b: usize) -> String {
    format!("--session={},{}", names[a], names[b])
}
