//! Shared by the recovery suites: an archive with a history of two volumes,
//! the sha256 of each image at each session, and running `arch-recover`
//! into a fresh meta dir.
#![allow(dead_code)]

use super::common::*;
use sparsebak_testing::tree::{self, Kind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const VA: &str = "vm-a";
pub const VB: &str = "vm-b";

pub struct World {
    pub e: Env,
    /// (volume, session timestamp) → sha256 of the image when it was sent.
    pub sha: BTreeMap<(String, String), String>,
}

/// How one step is sent.
#[derive(Clone, Copy, PartialEq)]
pub enum How {
    Plain,
    Tar,
    Dedup,
}

type Change = fn(&Path, &Path);

/// vm-a shrinks and grows; vm-b is partly a copy of vm-a (so `--dedup`
/// links something).
pub fn steps() -> Vec<(How, Change)> {
    vec![
        (How::Plain, |a, b| {
            write_file(a, &realistic_bytes(2 * MIB + 5000, 1));
            write_file(b, &realistic_bytes(MIB + 333, 2));
        }),
        (How::Plain, |a, b| {
            write_at(a, 100_000, &random_bytes(200_000, 3));
            write_at(b, 7, &text_bytes(70_000, 4));
        }),
        (How::Tar, |a, b| {
            set_len(a, 900_007);
            write_at(b, 500_000, &vec![0u8; 200_000]);
        }),
        (How::Dedup, |a, b| {
            set_len(a, 1_800_000);
            write_at(a, 1_500_000, &random_bytes(250_000, 5));
            // Whole chunks of vm-a's data, chunk-aligned: dedup links them.
            let same = std::fs::read(a).unwrap();
            write_at(b, 0, &same[..4 * CHUNK as usize]);
        }),
        (How::Plain, |a, b| {
            write_at(a, 5, b"first");
            write_at(b, MIB + 300, b"end");
        }),
    ]
}

impl World {
    /// arch-init, both volumes, one send per step, then a prune of vm-a's
    /// second session.
    pub fn new() -> World {
        Self::with_steps(&steps(), true)
    }

    pub fn with_steps(steps: &[(How, Change)], prune: bool) -> World {
        let e = Env::new();
        e.init(&[]);
        let (a, b) = (e.img(VA), e.img(VB));
        write_file(&a, b"");
        write_file(&b, b"");
        e.ok(&["add", VA]);
        e.ok(&["add", VB]);
        let mut sha = BTreeMap::new();
        for (how, change) in steps {
            change(&a, &b);
            let mut args = vec!["send", "-u"];
            match how {
                How::Plain => {}
                How::Tar => args.push("--tarfile"),
                How::Dedup => args.push("--dedup"),
            }
            e.ok(&args);
            for v in [VA, VB] {
                let last = e.session_names(v).pop().expect("a session");
                sha.insert((v.to_string(), last), sha256_file(&e.img(v)));
            }
        }
        let mut w = World { e, sha };
        if prune {
            let second = w.e.session_names(VA)[1].clone();
            w.e.ok(&["-u", "prune", VA, &format!("--session={second}")]);
            w.sha.remove(&(VA.to_string(), second));
        }
        w
    }

    pub fn sessions_of(&self, vol: &str) -> Vec<String> {
        self.sha
            .keys()
            .filter(|(v, _)| v == vol)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// `arch-recover` into `meta` with this world's destination.
    pub fn recover_into(&self, meta: &Path, env: &[(&str, &str)]) -> Out {
        let [d, s] = Env::dest_args(&self.e.dest);
        let source = format!("--source=dir:{}", self.e.src.display());
        run_sparsebak(&["arch-recover", &d, &s, &source], meta, env)
    }

    /// Every recorded session of `vol` restores, through `meta`, to the
    /// image it was sent from.
    pub fn restores_all(&self, meta: &Path, vol: &str) {
        for s in self.sessions_of(vol) {
            let target = self.e.path(&format!("restored-{vol}-{s}"));
            let save = format!("--save-to={}", target.display());
            let sess = format!("--session={s}");
            let o = run_sparsebak(&["receive", vol, &save, &sess], meta, &[]);
            assert_eq!(o.code, 0, "receive {vol} {s}: {o:#?}");
            assert_eq!(
                sha256_file(&target),
                self.sha[&(vol.to_string(), s.clone())],
                "session {s} of {vol} restores differently after recovery"
            );
            std::fs::remove_file(&target).unwrap();
        }
    }
}

/// Every file and dir under `root` except `skip` and the lock files: path →
/// bytes or link target, to prove what a run did not touch.
pub fn tree(root: &Path, skip: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    tree::walk(root, |p| p == skip || tree::is_lock_file(p))
        .into_iter()
        .map(|e| {
            let v = match &e.kind {
                Kind::Symlink(target) => target.clone().into_os_string().into_encoded_bytes(),
                Kind::Dir => b"dir".to_vec(),
                _ => e.read(),
            };
            (e.path, v)
        })
        .collect()
}
