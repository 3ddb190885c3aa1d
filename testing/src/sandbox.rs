//! The agent suites' temp dir: `dest/` where the archive goes and
//! `outside/canary` beside it. Hostile requests and planted links aim at
//! `outside`; a test snapshots the whole sandbox with [`crate::tree`] to
//! prove nothing there changed.

use std::fs;
use std::path::PathBuf;

pub struct Sandbox {
    /// Removed with everything in it when the sandbox is dropped.
    pub root: tempfile::TempDir,
    /// The archive's destination path (`Open.dest_path`); empty at first.
    pub dest: PathBuf,
    /// A sibling of `dest` the agent must never write to; holds `canary`.
    pub outside: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = tempfile::tempdir().expect("temp dir");
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        fs::create_dir(&dest).expect("mkdir dest");
        fs::create_dir(&outside).expect("mkdir outside");
        fs::write(outside.join("canary"), b"do not touch\n").expect("write the canary");
        Sandbox {
            root,
            dest,
            outside,
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}
