//! Shared helpers for the end-to-end suites: run the real `sparsebak` and
//! `sparsebak-agent` binaries as subprocesses against a throwaway archive in
//! a temporary directory, build deterministic disk images, and guard the
//! root-only fixtures (tmpfs and bind mounts, loop devices) so they are torn
//! down even when an assertion fails.
//!
//! Every suite includes this module with `mod common;`; not every suite uses
//! every helper.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CHUNK: u64 = 64 * 1024;
pub const MIB: u64 = 1024 * 1024;

pub fn sparsebak_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sparsebak"))
}

/// The agent binary beside `sparsebak`, as `cargo test --workspace` builds
/// it: with the `test-hooks` feature, which the crash tests need. A plain
/// `cargo build` leaves one without hooks there; that is refused here rather
/// than failing those tests in confusing ways.
pub fn agent_bin() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let p = sparsebak_bin()
                .parent()
                .expect("binary has a directory")
                .join("sparsebak-agent");
            let rebuild = "run `cargo test --workspace --no-run` (it builds the agent with \
                           the test-hooks feature) before `cargo test -p sparsebak`";
            assert!(
                p.is_file(),
                "the agent binary {} is missing: {rebuild}",
                p.display()
            );
            let v = sh_ok(p.to_str().expect("UTF-8 path"), &["--version"]);
            assert!(
                v.contains("test build"),
                "the agent binary {} is not a test build ({}): {rebuild}",
                p.display(),
                v.trim()
            );
            p
        })
        .clone()
}

/// The outcome of one `sparsebak` run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub args: Vec<String>,
}

impl Out {
    /// Assert the exit code and that stderr contains every needle.
    pub fn expect(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, code, "exit code of {self:#?}");
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr of `sparsebak {}` lacks {n:?}:\n{}",
                self.args.join(" "),
                self.stderr
            );
        }
        self
    }
}

/// Run a command line, capturing everything; panics if it cannot start.
pub fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Run a command that must succeed; returns its trimmed stdout.
pub fn sh_ok(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// One test's world: a temp dir holding the local metadata dir, a
/// directory of source images and the archive destination.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub meta: PathBuf,
    pub src: PathBuf,
    /// The directory the archive lives in (`<dest>/sparsebak/…`).
    pub dest: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("sparsebak-e2e-")
            .tempdir()
            .expect("temp dir");
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let (meta, src, dest) = (root.join("meta"), root.join("src"), root.join("dest"));
        for d in [&src, &dest] {
            std::fs::create_dir(d).expect("mkdir");
        }
        Env {
            tmp,
            meta,
            src,
            dest,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().canonicalize().expect("canonical temp dir")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Run `sparsebak ARGS` with this env's meta dir and the real agent.
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &self.meta)
    }

    pub fn run_with(&self, args: &[&str], meta: &Path) -> Out {
        run_sparsebak(args, meta, &[])
    }

    /// Run and require exit code 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.code, 0, "`sparsebak {}` failed: {o:#?}", args.join(" "));
        o.stdout
    }

    /// `--dest=internal:MP` and `--subdir=REL` for a directory on this machine.
    pub fn dest_args(dir: &Path) -> [String; 2] {
        let mp = mount_point_of(dir);
        let rel = dir
            .strip_prefix(&mp)
            .expect("dir under its mountpoint")
            .to_string_lossy()
            .into_owned();
        [
            format!("--dest=internal:{}", mp.display()),
            format!("--subdir={rel}"),
        ]
    }

    /// arch-init onto `self.dest` with `--source=dir:SRC` and extra options;
    /// format 1 (`--encrypt=off`) unless they say otherwise.
    pub fn init(&self, extra: &[&str]) -> String {
        let [d, s] = Self::dest_args(&self.dest);
        let source = format!("--source=dir:{}", self.src.display());
        let mut args = vec!["arch-init", &d, &s, &source];
        if !extra
            .iter()
            .any(|a| a.starts_with("--encrypt") || a.starts_with("--passphrase"))
        {
            args.push("--encrypt=off");
        }
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// A source image path in the source dir.
    pub fn img(&self, vol: &str) -> PathBuf {
        self.src.join(vol)
    }

    /// `list VOL --json`: the volume's sessions, oldest first.
    pub fn sessions(&self, vol: &str) -> Vec<Value> {
        let out = self.ok(&["list", vol, "--json"]);
        match serde_json::from_str(&out) {
            Ok(Value::Array(a)) => a,
            other => panic!("list --json printed {other:?}: {out}"),
        }
    }

    /// Session timestamps (`YYYYMMDD-HHMMSS`), oldest first.
    pub fn session_names(&self, vol: &str) -> Vec<String> {
        self.sessions(vol)
            .iter()
            .map(|s| s["name"].as_str().expect("name")["S_".len()..].to_string())
            .collect()
    }

    pub fn archive_dir(&self) -> PathBuf {
        self.dest.join("sparsebak")
    }

    pub fn vol_archive_dir(&self, vol: &str) -> PathBuf {
        self.archive_dir().join("volumes").join(vol)
    }

    /// Chunk files of one session in the archive, in address order.
    pub fn chunk_files(&self, vol: &str, session: &str) -> Vec<PathBuf> {
        let sdir = self.vol_archive_dir(vol).join(format!("S_{session}"));
        let mut out = Vec::new();
        for d in std::fs::read_dir(&sdir).expect("session dir").flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.len() == 9 && d.path().is_dir() {
                for f in std::fs::read_dir(d.path()).expect("fan-out dir").flatten() {
                    out.push(f.path());
                }
            }
        }
        out.sort();
        out
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.meta.join("archive.json")).expect("config"))
            .expect("config json")
    }

    /// `verify VOL` must pass.
    pub fn verify_ok(&self, vol: &str) {
        let out = self.ok(&["verify", vol]);
        assert!(out.contains(&format!("Verified {vol} session")), "{out}");
    }

    /// Receive a session into a new file and return the file's sha256.
    pub fn receive_sha(&self, vol: &str, session: Option<&str>, name: &str) -> String {
        let target = self.path(name);
        let save = format!("--save-to={}", target.display());
        let sess = session.map(|s| format!("--session={s}"));
        let mut args = vec!["receive", vol, &save];
        if let Some(s) = &sess {
            args.push(s);
        }
        self.ok(&args);
        sha256_file(&target)
    }
}

/// The mount point holding a path, as the agent's mount-point check sees it.
pub use sparsebak_testing::mounts::mount_point_of;

/// The address of a chunk file from its name `x<16hex>`.
pub fn chunk_addr(p: &Path) -> u64 {
    let n = p.file_name().unwrap().to_string_lossy();
    u64::from_str_radix(&n[1..], 16).expect("chunk file name")
}

// ---- deterministic data ---------------------------------------------------

/// splitmix64: tiny, seedable, good enough to make incompressible data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len as usize + 8);
    while (v.len() as u64) < len {
        v.extend_from_slice(&r.next().to_le_bytes());
    }
    v.truncate(len as usize);
    v
}

/// Log-file-like text: compressible but never repeating exactly.
pub fn text_bytes(len: u64, seed: u64) -> Vec<u8> {
    let words = [
        "volume",
        "session",
        "chunk",
        "kernel:",
        "sd 0:0:0:0",
        "ext4",
        "mounted",
        "qube",
        "backup",
        "started",
        "finished",
        "error",
        "warning",
        "the",
        "disk",
        "of",
    ];
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len as usize + 128);
    let mut line = 0u64;
    while (v.len() as u64) < len {
        line += 1;
        v.extend_from_slice(format!("{seed:x}.{line:06} ").as_bytes());
        for _ in 0..(4 + r.below(8)) {
            v.extend_from_slice(words[r.below(words.len() as u64) as usize].as_bytes());
            v.push(b' ');
        }
        v.push(b'\n');
    }
    v.truncate(len as usize);
    v
}

/// A disk-like image: runs of zeros, text and random data of varied,
/// unaligned lengths.
pub fn realistic_bytes(size: u64, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed.wrapping_mul(31));
    let mut v = Vec::with_capacity(size as usize);
    let mut n = 0u64;
    while (v.len() as u64) < size {
        n += 1;
        let len = (20_000 + r.below(250_000)).min(size - v.len() as u64);
        match r.below(10) {
            0..=3 => v.resize(v.len() + len as usize, 0),
            4..=6 => v.extend(text_bytes(len, seed ^ n)),
            _ => v.extend(random_bytes(len, seed ^ (n << 32))),
        }
    }
    v
}

pub fn write_file(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
}

/// Overwrite `data.len()` bytes at `off` (extends the file if needed).
pub fn write_at(p: &Path, off: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(p).expect("open image");
    f.write_all_at(data, off).expect("write image");
}

pub fn set_len(p: &Path, len: u64) {
    let f = OpenOptions::new().write(true).open(p).expect("open image");
    f.set_len(len).expect("resize image");
}

/// Chunk indices (of `chunk` bytes) touched by writes `(offset, length)`.
pub fn touched_chunks(writes: &[(u64, u64)], chunk: u64) -> BTreeSet<u64> {
    writes
        .iter()
        .flat_map(|&(off, len)| off / chunk..(off + len).div_ceil(chunk))
        .collect()
}

// Hashing goes through coreutils' sha256sum: the test profile builds sha2
// without optimisation, which makes hashing images in-process slow.

pub fn sha256_file(p: &Path) -> String {
    let f = File::open(p).unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()));
    sha256_stream(f, u64::MAX, &p.display().to_string())
}

/// sha256 of the first `n` bytes of a file or device, which must hold them.
pub fn sha256_prefix(p: &Path, n: u64) -> String {
    let f = File::open(p).unwrap_or_else(|e| panic!("cannot open {}: {e}", p.display()));
    sha256_stream(f, n, &p.display().to_string())
}

pub fn sha256(data: &[u8]) -> String {
    sha256_stream(data, u64::MAX, "bytes")
}

fn sha256_stream(r: impl Read, limit: u64, what: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run sha256sum (coreutils)");
    let mut stdin = child.stdin.take().unwrap();
    let n = std::io::copy(&mut r.take(limit), &mut stdin).expect("feed sha256sum");
    drop(stdin);
    assert!(
        limit == u64::MAX || n == limit,
        "{what} holds only {n} of {limit} bytes"
    );
    let o = child.wait_with_output().expect("sha256sum");
    assert!(o.status.success(), "sha256sum failed");
    let out = String::from_utf8_lossy(&o.stdout);
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

// ---- root-only fixtures ---------------------------------------------------

/// Root is needed for mounts and loop devices. In CI (`CI=true`) a missing
/// privilege is a failure; elsewhere the test is skipped loudly.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs root (mount/losetup) and CI=true: run the suite as root");
    }
    // Written to the real stderr, past libtest's capture, so it is seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: needs root (mount/losetup); run as root to cover it ***\n"
    );
    false
}

/// A mounted file system, unmounted when dropped (lazily if busy).
pub struct Mount(pub PathBuf);

impl Mount {
    pub fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).expect("mkdir mountpoint");
        let opt = format!("size={size}");
        sh_ok(
            "mount",
            &["-t", "tmpfs", "-o", &opt, "tmpfs", &dir.to_string_lossy()],
        );
        Mount(dir.into())
    }

    pub fn bind(from: &Path, dir: &Path) -> Mount {
        std::fs::create_dir_all(dir).expect("mkdir mountpoint");
        sh_ok(
            "mount",
            &["--bind", &from.to_string_lossy(), &dir.to_string_lossy()],
        );
        Mount(dir.into())
    }

    pub fn resize(&self, size: &str) {
        let opt = format!("remount,size={size}");
        sh_ok("mount", &["-o", &opt, &self.0.to_string_lossy()]);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let p = self.0.to_string_lossy().into_owned();
        if !sh("umount", &[&p]).status.success() {
            let _ = sh("umount", &["-l", &p]);
        }
    }
}

/// A loop device over a file, detached when dropped.
pub struct Loop(pub PathBuf);

/// Serialises `losetup` within this test process: the suites used to run
/// in separate processes one after the other, and parallel `losetup -f`
/// calls may race for the same free device.
static LOSETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn losetup(args: &[&str]) -> std::process::Output {
    let _one_at_a_time = LOSETUP.lock().unwrap_or_else(|e| e.into_inner());
    sh("losetup", args)
}

impl Loop {
    pub fn new(backing: &Path) -> Loop {
        let args = ["-f", "--show", &backing.to_string_lossy()];
        let o = losetup(&args);
        assert!(
            o.status.success(),
            "losetup {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = losetup(&["-d", &self.0.to_string_lossy()]);
    }
}

/// Holds `sparsebak`'s meta-dir lock with util-linux `flock` until dropped.
pub struct HeldLock(std::process::Child);

impl HeldLock {
    pub fn new(lock_file: &Path) -> HeldLock {
        let mut child = Command::new("flock")
            .arg(lock_file)
            .args(["sh", "-c", "echo locked; exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot run flock (util-linux)");
        let mut buf = [0u8; 7];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut buf)
            .expect("flock reports the lock");
        assert_eq!(&buf, b"locked\n");
        HeldLock(child)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Closing stdin ends `cat`, which ends flock and releases the lock.
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.0.wait();
    }
}

/// `sparsebak ARGS` with its meta dir and extra environment (test hooks).
pub fn run_sparsebak(args: &[&str], meta: &Path, env: &[(&str, &str)]) -> Out {
    let o = Command::new(sparsebak_bin())
        .args(args)
        .env("SPARSEBAK_META_DIR", meta)
        .env("SPARSEBAK_AGENT", agent_bin())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("cannot start sparsebak");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}
