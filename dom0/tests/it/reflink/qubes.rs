//! Qubes by name in an archive of a file-reflink pool, end to end on
//! Btrfs with the qvm-* stand-ins (tests/standins, named as such: Qubes'
//! tools cannot run here) on PATH: `add --qube`, `send`, and `restore-qube`
//! writing each qube's image in the pool (sparse, beside it and renamed
//! over it), the replaced image kept as a reflink copy; every session
//! restored equals what was sent, by sha256.

use super::{check_sessions, init, pool, sent_changed, write_sync, Pool};
use crate::common::*;
use std::path::{Path, PathBuf};

/// The stand-ins' state, a file-reflink pool `varlibqubes` at the pool's
/// directory, and the environment that puts them on PATH.
pub(super) struct Qubes {
    standins: PathBuf,
    pub(super) state: PathBuf,
    path: String,
    /// More environment for every sparsebak run (an object store's).
    pub(super) env: Vec<(String, String)>,
}

impl Qubes {
    pub(super) fn new(e: &Env, p: &Pool) -> Qubes {
        let standins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/standins");
        let state = e.path("qvm-state");
        std::fs::create_dir(&state).unwrap();
        let path = format!(
            "{}:{}",
            standins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let q = Qubes {
            standins,
            state,
            path,
            env: Vec::new(),
        };
        q.make(&[
            "--pool",
            "varlibqubes",
            "file-reflink",
            &p.dir.to_string_lossy(),
        ]);
        q
    }

    pub(super) fn make(&self, args: &[&str]) {
        let st = std::process::Command::new(self.standins.join("make-qube"))
            .args(args)
            .env("QVM_STANDIN_STATE", &self.state)
            .env("QVM_STANDIN_POOL", "varlibqubes")
            .status()
            .unwrap();
        assert!(st.success(), "make-qube {args:?}");
    }

    pub(super) fn run(&self, e: &Env, args: &[&str]) -> Out {
        let st = self.state.to_string_lossy().into_owned();
        let xml = self.state.join("qubes.xml").to_string_lossy().into_owned();
        let mut env = vec![
            ("PATH", self.path.as_str()),
            ("QVM_STANDIN_STATE", st.as_str()),
            ("SPARSEBAK_QUBES_XML", xml.as_str()),
            // qubes-prefs default_pool of a file-reflink install.
            ("QVM_STANDIN_POOL", "varlibqubes"),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        run_sparsebak(args, &e.meta, &env)
    }

    pub(super) fn ok(&self, e: &Env, args: &[&str]) -> String {
        let o = self.run(e, args);
        assert_eq!(o.code, 0, "{args:?}: {o:#?}");
        o.stdout
    }

    pub(super) fn uuid(&self, q: &str) -> String {
        std::fs::read_to_string(self.state.join("qubes").join(q).join("uuid"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub(super) fn set(&self, q: &str, file: &str, value: &str) {
        std::fs::write(self.state.join("qubes").join(q).join(file), value).unwrap();
    }
}

/// A template `fed` (root, private) and an AppVM `work` on it, in the pool.
fn two_qubes(e: &Env, p: &Pool) -> Qubes {
    let q = Qubes::new(e, p);
    q.make(&["fed", "TemplateVM", "Halted"]);
    q.make(&["work", "AppVM", "Running", "fed"]);
    write_file(&p.work(), &realistic_bytes(3 * MIB, 5));
    write_file(&p.tpl(), &realistic_bytes(2 * MIB, 6));
    write_file(&fed_private(p), &realistic_bytes(MIB, 7));
    q.ok(e, &["add", "--qube", "work"]);
    q.ok(e, &["add", "--qube", "fed"]);
    q
}

pub(super) fn fed_private(p: &Pool) -> PathBuf {
    p.dir.join("vm-templates/fed/private.img")
}

/// `add --qube`, send, change, send incrementally; every session restores
/// equal.
#[test]
fn btrfs_qubes_by_name() {
    let e = Env::new();
    let Some(p) = pool(&e, "btrfs", "reflink::qubes::btrfs_qubes_by_name") else {
        return;
    };
    init(&e, &p);
    let q = two_qubes(&e, &p);
    let work = format!("qube.{}.private", q.uuid("work"));
    let root = format!("qube.{}.root", q.uuid("fed"));
    q.ok(&e, &["send"]);
    let mut shas = vec![sha256_file(&p.work())];
    write_sync(&p.work(), 5 * CHUNK, b"qube by name");
    let out = q.ok(&e, &["send"]);
    assert_eq!(sent_changed(&out, &work), 1, "{out}");
    assert_eq!(sent_changed(&out, &root), 0, "{out}");
    shas.push(sha256_file(&p.work()));
    check_sessions(&e, &work, &shas);
    check_sessions(&e, &root, &[sha256_file(&p.tpl())]);
}

/// The shas of work's private, fed's root and fed's private.
pub(super) fn shas(p: &Pool) -> [String; 3] {
    [
        sha256_file(&p.work()),
        sha256_file(&p.tpl()),
        sha256_file(&fed_private(p)),
    ]
}

fn utc_now() -> String {
    let o = sh_ok("date", &["-u", "+%Y%m%d-%H%M%S"]);
    o.trim().to_string()
}

/// Files in `dir` whose name starts with `prefix`.
fn named_like(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// restore-qube in a file-reflink archive (Btrfs, XFS): into the existing halted qube
/// as of the first and the latest session (the replaced image kept as a
/// reflink copy holding the old content, Qubes' precache of it removed,
/// the next send storing nothing), into a missing qube (created by
/// qvm-create in the pool), a template --as a new name at each session;
/// a qube that did not stop cleanly and a pool that is not the archive's
/// are refused before anything changes.
#[test]
fn btrfs_restore_qube() {
    restore_qube("btrfs");
}

#[test]
fn xfs_restore_qube() {
    restore_qube("xfs");
}

fn restore_qube(fs: &str) {
    let e = Env::new();
    let Some(p) = pool(&e, fs, &format!("reflink::qubes::{fs}_restore_qube")) else {
        return;
    };
    init(&e, &p);
    let q = two_qubes(&e, &p);
    let work = format!("qube.{}.private", q.uuid("work"));
    q.set("work", "state", "Halted\n");
    q.ok(&e, &["send"]);
    let first = shas(&p);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let at_first = utc_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_sync(&p.work(), 7 * CHUNK, &random_bytes(2 * CHUNK, 41));
    write_sync(&p.tpl(), CHUNK, b"template update");
    write_sync(&fed_private(&p), 0, b"template home");
    q.ok(&e, &["send"]);
    let second = shas(&p);
    assert_ne!(first[0], second[0]);

    // Into the existing halted qube as of the first session.
    let precache = p.dir.join("appvms/work/private-precache.img");
    write_file(&precache, b"Qubes' copy of the old image");
    let s1 = format!("--session={at_first}");
    let out = q.ok(&e, &["restore-qube", "work", &s1]);
    assert_eq!(sha256_file(&p.work()), first[0], "work = session 1");
    let kept = named_like(&p.dir.join("appvms/work"), "private.img.pre-restore-");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        sha256_file(&kept[0]),
        second[0],
        "the kept copy holds the old image"
    );
    assert!(
        out.contains(&format!("mv {} {}", kept[0].display(), p.work().display())),
        "{out}"
    );
    assert!(
        !precache.exists(),
        "Qubes' precache of the old image is gone"
    );
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = std::fs::metadata(p.work()).unwrap();
        assert!(m.blocks() * 512 < m.len(), "zero chunks are holes");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    // Going back as the output says gives the second state again.
    std::fs::rename(&kept[0], p.work()).unwrap();
    assert_eq!(sha256_file(&p.work()), second[0]);

    // The latest session into its own image: the next send stores nothing.
    write_sync(&p.work(), 0, &random_bytes(CHUNK, 42));
    q.ok(&e, &["restore-qube", "work"]);
    assert_eq!(sha256_file(&p.work()), second[0], "work = session 2");
    let out = q.ok(&e, &["send", "work"]);
    assert_eq!(sent_changed(&out, &work), 0, "{out}");
    for k in named_like(&p.dir.join("appvms/work"), "private.img.pre-restore-") {
        std::fs::remove_file(k).unwrap();
    }

    // A qube that did not stop cleanly: refused, nothing changes.
    let dirty = p.dir.join("appvms/work/private-dirty.img");
    write_file(&dirty, b"");
    q.run(&e, &["restore-qube", "work", &s1])
        .expect(1, &["private-dirty.img exists", "did not stop cleanly"]);
    assert_eq!(sha256_file(&p.work()), second[0]);
    assert!(named_like(&p.dir.join("appvms/work"), "private.img.pre-").is_empty());
    std::fs::remove_file(&dirty).unwrap();

    // Missing: qvm-create makes it in the pool, then its image is written.
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    std::fs::remove_dir_all(p.dir.join("appvms/work")).unwrap();
    let out = q.ok(&e, &["restore-qube", "work", &s1]);
    assert!(out.contains("create AppVM work"), "{out}");
    assert_eq!(
        sha256_file(&p.work()),
        first[0],
        "recreated work = session 1"
    );

    // The template as a new qube, at each session: root and private.
    q.ok(&e, &["restore-qube", "fed", "--as=fed-old", &s1]);
    q.ok(&e, &["restore-qube", "fed", "--as=fed-new"]);
    for (name, want) in [("fed-old", &first), ("fed-new", &second)] {
        let d = p.dir.join("vm-templates").join(name);
        assert_eq!(sha256_file(&d.join("root.img")), want[1], "{name} root");
        assert_eq!(
            sha256_file(&d.join("private.img")),
            want[2],
            "{name} private"
        );
    }
    assert_eq!(sha256_file(&p.tpl()), second[1], "fed untouched");

    // A pool other than the archive's: refused before anything is created.
    q.make(&["--pool", "vm-pool", "lvm_thin", "qubes_dom0", "vm-pool"]);
    q.run(&e, &["restore-qube", "work", "--as=w2", "--pool=vm-pool"])
        .expect(
            1,
            &[
                "is not the pool this archive backs up",
                "nothing was changed",
            ],
        );
    assert!(!q.state.join("qubes/w2").exists());
    check_sessions(&e, &work, &[first[0].clone(), second[0].clone()]);
}
