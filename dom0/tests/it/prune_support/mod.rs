//! Shared by the prune suites: a volume's history of sends with the sha256
//! of the image at every session, and checks that every remaining session
//! still restores to exactly that.
#![allow(dead_code)]

use super::common::*;
use sparsebak_testing::tree::{self, Kind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const VOL: &str = "vm-data";

pub type Step = fn(&Path);

/// A history in which the volume shrinks and grows: 2 MiB + 5000, then
/// overwrites, zeros, a shrink to 900007 bytes, regrowth to 1.8 MB with
/// new data, and small edits at both ends.
pub fn standard_steps() -> Vec<Step> {
    vec![
        |p| write_file(p, &realistic_bytes(2 * MIB + 5000, 1)),
        |p| write_at(p, 100_000, &random_bytes(200_000, 2)),
        |p| write_at(p, 300_000, &vec![0u8; 150_000]),
        |p| set_len(p, 900_007),
        |p| {
            set_len(p, 1_800_000);
            write_at(p, 1_500_000, &random_bytes(250_000, 3));
        },
        |p| {
            write_at(p, 5, b"first");
            write_at(p, 1_799_990, b"last");
        },
    ]
}

pub struct Hist {
    pub e: Env,
    /// Session timestamp → sha256 of the image when it was sent.
    pub sha: BTreeMap<String, String>,
}

impl Hist {
    /// arch-init, add VOL, and one send per step (each must make a session).
    pub fn new(steps: &[Step]) -> Hist {
        Hist::with_tar(steps, &[])
    }

    /// [`Hist::new`], sending step `i` with `send --tarfile` when `tar[i]`.
    pub fn with_tar(steps: &[Step], tar: &[bool]) -> Hist {
        let e = Env::new();
        e.init(&[]);
        let img = e.img(VOL);
        write_file(&img, b"");
        e.ok(&["add", VOL]);
        let mut sha = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            step(&img);
            if tar.get(i).copied().unwrap_or(false) {
                e.ok(&["send", "-u", "--tarfile"]);
            } else {
                e.ok(&["send", "-u"]);
            }
            let names = e.session_names(VOL);
            assert_eq!(names.len(), i + 1, "step {i} made no session");
            sha.insert(names[i].clone(), sha256_file(&img));
        }
        Hist { e, sha }
    }

    pub fn names(&self) -> Vec<String> {
        self.e.session_names(VOL)
    }

    /// The sessions are exactly `want` (in chain order), each restores to
    /// the image it was sent from, and verify passes.
    pub fn check(&self, want: &[String]) {
        assert_eq!(self.names(), want, "sessions after the prune");
        for (i, s) in want.iter().enumerate() {
            let got = self
                .e
                .receive_sha(VOL, Some(s), &format!("restore-{s}-{i}"));
            assert_eq!(&got, &self.sha[s], "session {s} restores differently");
            let _ = std::fs::remove_file(self.e.path(&format!("restore-{s}-{i}")));
        }
        self.e.verify_ok(VOL);
        self.no_leftovers();
    }

    /// No prune journal or plan, no session set aside, on either side.
    pub fn no_leftovers(&self) {
        for dir in [
            self.e.meta.join("volumes").join(VOL),
            self.e.vol_archive_dir(VOL),
        ] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let n = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    !n.starts_with(".prune") && !n.ends_with("-pruned"),
                    "{} holds {n}",
                    dir.display()
                );
            }
        }
    }

    /// Every session but those at `idx`.
    pub fn without(&self, names: &[String], idx: std::ops::RangeInclusive<usize>) -> Vec<String> {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| !idx.contains(i))
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The whole archive and local metadata: path → bytes (the lock files
    /// aside), to prove a refused command changed nothing.
    pub fn state(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        [&self.e.meta, &self.e.dest]
            .into_iter()
            .flat_map(|root| tree::walk(root, tree::is_lock_file))
            .map(|e| {
                let v = match e.kind {
                    Kind::Dir => b"dir".to_vec(),
                    // A link's target's bytes: neither side makes links here.
                    _ => e.read(),
                };
                (e.path, v)
            })
            .collect()
    }
}

/// Run until the archive is not locked by an agent that is still finishing
/// the request of a killed sparsebak.
pub fn run_when_unlocked(e: &Env, args: &[&str]) -> Out {
    for _ in 0..150 {
        let out = e.run(args);
        if !out.stderr.contains("locked by another sparsebak") {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("the archive stayed locked");
}

/// `sparsebak ARGS` with extra environment (test hooks).
pub fn run_env(e: &Env, args: &[&str], env: &[(&str, &str)]) -> Out {
    run_sparsebak(args, &e.meta, env)
}

/// `sparsebak ARGS` inside a pseudo-terminal (util-linux `script`), typing
/// `input`.
pub fn run_tty(e: &Env, args: &[&str], input: &str) -> Out {
    use std::io::Write;
    let cmd = std::iter::once(sparsebak_bin().display().to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SPARSEBAK_META_DIR", &e.meta)
        .env("SPARSEBAK_AGENT", agent_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run script (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    // The terminal merges stdout and stderr.
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: text.clone(),
        stderr: text,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}
