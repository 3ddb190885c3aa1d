//! restore-qube from an archive in an object store: qubes on a file-reflink
//! pool (real XFS on a loop device) sent twice to `internal:s3:rgw`, a
//! bucket of the **real** Ceph RADOS Gateway tests/suite-s3.sh starts, with
//! the qvm-* stand-ins (tests/standins, named as such: Qubes' tools cannot
//! run here) on PATH. Every session is restored into the existing qube and
//! under a new name (`--as`), and each restored image equals, by sha256,
//! the source as it was when that session was sent.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs the gateway, named by
//! S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION and S3_BUCKET (an
//! existing bucket). tests/suite-s3.sh runs it with `--ignored`; without
//! those variables, root or mkfs.xfs it fails, never passes.

use super::qubes::{fed_private, shas, Qubes};
use super::{pool, write_sync, Pool};
use crate::common::*;
use std::path::{Path, PathBuf};

fn var(n: &str) -> String {
    std::env::var(n).unwrap_or_else(|_| {
        panic!("{n} is not set: this test runs against the gateway tests/suite-s3.sh starts")
    })
}

/// The store `rgw` as a user configures it where the agent runs
/// (docs/FORMAT.md §21.8): a configuration file in SPARSEBAK_STORE_DIR,
/// the keys in the environment. The prefix is this test's own, so a rerun
/// against the same bucket starts empty.
fn store_env(e: &Env) -> Vec<(String, String)> {
    let dir = e.path("stores");
    std::fs::create_dir(&dir).unwrap();
    let prefix = e.root().file_name().unwrap().to_string_lossy().into_owned();
    let conf = format!(
        "endpoint = {}\nbucket = {}\nregion = {}\nprefix = {prefix}\n",
        var("S3_ENDPOINT"),
        var("S3_BUCKET"),
        var("S3_REGION")
    );
    std::fs::write(dir.join("rgw.conf"), conf).unwrap();
    vec![
        (
            "SPARSEBAK_STORE_DIR".into(),
            dir.to_string_lossy().into_owned(),
        ),
        ("AWS_ACCESS_KEY_ID".into(), var("S3_ACCESS_KEY")),
        ("AWS_SECRET_ACCESS_KEY".into(), var("S3_SECRET_KEY")),
    ]
}

/// The sessions of `qube`'s settings record, oldest first (`list QUBE`).
fn sessions(q: &Qubes, e: &Env, qube: &str) -> Vec<String> {
    let out = q.ok(e, &["list", qube, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap()["S_".len()..].to_string())
        .collect()
}

/// Remove the copies restore-qube keeps of replaced images.
fn drop_kept(dir: &Path) {
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        if f.file_name().to_string_lossy().contains(".pre-restore-") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
}

fn image(p: &Pool, kind: &str, qube: &str, vol: &str) -> PathBuf {
    p.dir.join(kind).join(qube).join(format!("{vol}.img"))
}

#[test]
#[ignore = "needs the RADOS Gateway tests/suite-s3.sh starts"]
fn restore_qube_from_a_bucket() {
    let e = Env::new();
    let p = pool(&e, "xfs", "reflink::qubes_s3::restore_qube_from_a_bucket")
        .expect("this test needs root and mkfs.xfs (tests/setup-host.sh)");
    let mut q = Qubes::new(&e, &p);
    q.env = store_env(&e);
    q.make(&["fed", "TemplateVM", "Halted"]);
    q.make(&["work", "AppVM", "Halted", "fed"]);
    write_file(&p.work(), &realistic_bytes(3 * MIB, 5));
    write_file(&p.tpl(), &realistic_bytes(2 * MIB, 6));
    write_file(&fed_private(&p), &realistic_bytes(MIB, 7));
    let pass = e.path("pass");
    std::fs::write(&pass, "a passphrase for restore-qube from a bucket\n").unwrap();
    let out = q.ok(
        &e,
        &[
            "arch-init",
            "--dest=internal:s3:rgw",
            "--subdir=qubes",
            &format!("--source=reflink:{}", p.dir.display()),
            "--encrypt=on",
            &format!("--passphrase-file={}", pass.display()),
        ],
    );
    assert!(out.contains("s3:rgw/qubes"), "{out}");
    q.ok(&e, &["add", "--qube", "work"]);
    q.ok(&e, &["add", "--qube", "fed"]);

    // Two sends, the data changed in between: the source at each session.
    let mut want = Vec::new();
    q.ok(&e, &["send"]);
    want.push(shas(&p));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_sync(&p.work(), 7 * CHUNK, &random_bytes(2 * CHUNK, 41));
    write_sync(&p.tpl(), CHUNK, b"template update");
    write_sync(&fed_private(&p), 0, b"template home");
    q.ok(&e, &["send"]);
    want.push(shas(&p));
    assert_ne!(want[0], want[1]);
    // The points restore-qube can go back to, as `list QUBE` shows them
    // (the sessions of each qube's settings record).
    let work_at = sessions(&q, &e, "work");
    let fed_at = sessions(&q, &e, "fed");
    assert_eq!(
        (work_at.len(), fed_at.len()),
        (2, 2),
        "{work_at:?} {fed_at:?}"
    );

    for (i, want) in want.iter().enumerate() {
        let (at_w, at_f) = (
            format!("--session={}", work_at[i]),
            format!("--session={}", fed_at[i]),
        );
        // Into the existing halted qube, over an image changed since.
        write_sync(&p.work(), 0, &random_bytes(CHUNK, 50 + i as u64));
        q.ok(&e, &["restore-qube", "work", &at_w]);
        assert_eq!(sha256_file(&p.work()), want[0], "work {at_w}");
        drop_kept(&p.dir.join("appvms/work"));
        // Under new names: an AppVM, and a template's root and private.
        let (w, t) = (format!("work-{i}"), format!("fed-{i}"));
        q.ok(&e, &["restore-qube", "work", &format!("--as={w}"), &at_w]);
        q.ok(&e, &["restore-qube", "fed", &format!("--as={t}"), &at_f]);
        let got = [
            sha256_file(&image(&p, "appvms", &w, "private")),
            sha256_file(&image(&p, "vm-templates", &t, "root")),
            sha256_file(&image(&p, "vm-templates", &t, "private")),
        ];
        assert_eq!(got, *want, "{w} {at_w}, {t} {at_f}");
    }
    assert_eq!(sha256_file(&p.tpl()), want[1][1], "fed untouched");
}
