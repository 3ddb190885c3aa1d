//! The qube commands through the real binary: their command lines, and
//! their refusals on an archive that cannot hold qubes (a directory of
//! images), with Qubes' tools played by the stand-ins of tests/standins
//! (found on PATH, as the real ones are in dom0). The whole add, send and
//! restore flow runs over the LVM fake in dom0/src/ops/tests/ and on real
//! LVM in tests/vm/scenarios/70-qubes.sh.

use crate::common::*;
use std::path::PathBuf;

fn standins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/standins")
}

fn run_qubes(e: &Env, args: &[&str]) -> Out {
    let state = e.path("qubes-state");
    std::fs::create_dir_all(&state).unwrap();
    let path = format!(
        "{}:{}",
        standins().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let st = state.to_string_lossy().into_owned();
    let o = run_sparsebak(
        args,
        &e.meta,
        &[("PATH", &path), ("QVM_STANDIN_STATE", &st)],
    );
    let calls = std::fs::read_to_string(state.join("calls")).unwrap_or_default();
    assert!(
        calls.is_empty(),
        "no qvm tool is called before the archive is checked: {calls}"
    );
    o
}

#[test]
fn command_lines_are_checked() {
    let e = Env::new();
    e.init(&[]);
    e.run(&["restore-qube"]).expect(2, &["<QUBES>"]);
    e.run(&["restore-qube", "work", "--all"])
        .expect(2, &["cannot be used with"]);
    e.run(&["restore-qube", "--exclude=work"])
        .expect(2, &["--all"]);
    e.run(&["add"]).expect(2, &["required"]);
    e.run(&["add", "vol", "--qube=work"])
        .expect(2, &["cannot be used with"]);
}

#[test]
fn an_archive_of_image_files_holds_no_qubes() {
    let e = Env::new();
    e.init(&[]);
    run_qubes(&e, &["add", "--qube=work"]).expect(1, &["LVM thin pool", "--source"]);
    run_qubes(&e, &["restore-qube", "work"])
        .expect(1, &["restore-qube writes qubes' volumes in the pool"]);
    run_qubes(&e, &["restore-qube", "--all", "--dry-run"])
        .expect(1, &["neither an LVM thin pool nor a file-reflink pool"]);
    run_qubes(&e, &["restore-qube", "work", "--data-only"])
        .expect(1, &["neither an LVM thin pool nor a file-reflink pool"]);
    run_qubes(&e, &["add", "--qube=-x"]).expect(1, &["not a valid qube name"]);
}
