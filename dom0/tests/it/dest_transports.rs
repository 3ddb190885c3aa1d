//! `connect()` over every transport kind, with small fake ssh and
//! qrexec-client programs (shell scripts in a temporary directory) in front
//! of the real agent and the real `qubes-rpc/qubes.SparsebakStore`. The
//! end-to-end suites (tests/suite-dest-*.sh) do the same against a real
//! OpenSSH server; these run in `cargo test` and pin the argv, the relay
//! header and the error explanations.

use sparsebak::dest::{connect, DestSpec, TransportOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn agent_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_sparsebak"))
        .parent()
        .expect("binary dir")
        .join("sparsebak-agent");
    assert!(
        p.is_file(),
        "the agent binary {} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

fn service_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../qubes-rpc/qubes.SparsebakStore")
}

/// An executable script. It is written by a short-lived `cp`, not by this
/// process: the suites share one process, and a child another test forks
/// while we held the script open for writing would keep it open until its
/// exec, so running the script could fail with ETXTBSY ("Text file busy").
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    let draft = dir.join(format!(".{name}.draft"));
    std::fs::write(&draft, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&draft, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("--")
        .arg(&draft)
        .arg(&p)
        .status()
        .unwrap();
    assert!(cp.success(), "cp {} {}", draft.display(), p.display());
    std::fs::remove_file(&draft).unwrap();
    p
}

/// A fake ssh that records its arguments and pid, then runs the agent.
fn fake_ssh(dir: &Path) -> PathBuf {
    script(
        dir,
        "ssh",
        &format!(
            "printf '%s\\n' \"$*\" >>'{d}/ssh.args'\necho $$ >'{d}/ssh.pid'\nexec '{a}'",
            d = dir.display(),
            a = agent_bin().display()
        ),
    )
}

fn opts(dir: &Path) -> TransportOptions {
    TransportOptions {
        agent: agent_bin(),
        ssh: dir.join("ssh"),
        qrexec_client: dir.join("qrexec-client"),
        qvm_start: None,
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn ssh_runs_the_agent_with_a_fixed_argv() {
    let d = tempfile::tempdir().unwrap();
    fake_ssh(d.path());
    let spec = DestSpec::parse("ssh://me@nas.lan:2200/srv/bk", "a/b").unwrap();
    let conn = connect(&spec, &opts(d.path())).unwrap();
    conn.close().unwrap();
    assert_eq!(
        read(&d.path().join("ssh.args")),
        "-T -e none -p 2200 -- me@nas.lan sparsebak-agent\n"
    );
}

#[test]
fn a_host_without_the_agent_is_explained() {
    let d = tempfile::tempdir().unwrap();
    script(
        d.path(),
        "ssh",
        "echo 'bash: line 1: sparsebak-agent: command not found' >&2; exit 127",
    );
    let spec = DestSpec::parse("ssh://nas/srv/bk", "").unwrap();
    let err = format!("{:#}", connect(&spec, &opts(d.path())).err().unwrap());
    assert!(
        err.starts_with(
            "cannot reach the agent at ssh://nas/srv/bk: \
             sparsebak-agent is not installed on nas, or not on the PATH of its non-interactive \
             ssh sessions (ssh exited with status 127; it said: bash: line 1: sparsebak-agent: \
             command not found); install it there: copy the statically linked sparsebak-agent"
        ),
        "{err}"
    );
}

#[test]
fn a_killed_link_is_explained() {
    let d = tempfile::tempdir().unwrap();
    fake_ssh(d.path());
    let spec = DestSpec::parse("ssh://nas/srv/bk", "").unwrap();
    let mut conn = connect(&spec, &opts(d.path())).unwrap();
    let pid: i32 = read(&d.path().join("ssh.pid")).trim().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = format!(
        "{:#}",
        conn.list_sessions(&sparsebak_common::names::VolName::new("vol").unwrap())
            .unwrap_err()
    );
    assert!(
        err.starts_with("connection to the agent at ssh://nas/srv/bk was lost (")
            && err.ends_with("): ssh to nas was killed by signal 9: the link broke"),
        "{err}"
    );
}

/// A fake qrexec-client running the real service, with a fake ssh on its PATH.
fn fake_qubes(dir: &Path) {
    let bin = dir.join("vm-bin");
    std::fs::create_dir(&bin).unwrap();
    fake_ssh(&bin);
    std::os::unix::fs::symlink(agent_bin(), bin.join("sparsebak-agent")).unwrap();
    script(
        dir,
        "qrexec-client",
        &format!(
            "printf '%s\\n' \"$*\" >>'{d}/qrexec.args'\n\
             [ \"$1\" = -d ] || exit 2\n\
             arg=${{3#DEFAULT:QUBESRPC qubes.SparsebakStore+}}; arg=${{arg% dom0}}\n\
             exec env PATH='{b}:/usr/bin:/bin' QREXEC_SERVICE_ARGUMENT=\"$arg\" \
             QREXEC_REMOTE_DOMAIN=dom0 '{s}' \"$arg\"",
            d = dir.display(),
            b = bin.display(),
            s = service_file().display()
        ),
    );
}

#[test]
fn qubes_calls_the_service_in_agent_mode() {
    let d = tempfile::tempdir().unwrap();
    fake_qubes(d.path());
    let spec = DestSpec::parse("qubes://sys-backup/mnt/usb", "").unwrap();
    connect(&spec, &opts(d.path())).unwrap().close().unwrap();
    assert_eq!(
        read(&d.path().join("qrexec.args")),
        "-d sys-backup DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0\n"
    );
}

#[test]
fn qubes_ssh_sends_the_relay_header_and_the_vm_runs_ssh() {
    let d = tempfile::tempdir().unwrap();
    fake_qubes(d.path());
    let spec = DestSpec::parse("qubes-ssh://sys-net|me@nas.lan:2200/srv", "").unwrap();
    connect(&spec, &opts(d.path())).unwrap().close().unwrap();
    assert_eq!(
        read(&d.path().join("qrexec.args")),
        "-d sys-net DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0\n"
    );
    assert_eq!(
        read(&d.path().join("vm-bin/ssh.args")),
        "-T -e none -p 2200 -- me@nas.lan sparsebak-agent\n"
    );
}

#[test]
fn qvm_start_runs_first_and_its_failure_is_quoted() {
    let d = tempfile::tempdir().unwrap();
    fake_qubes(d.path());
    let start = script(
        d.path(),
        "qvm-start",
        &format!(
            "echo \"$*\" >>'{}/qvm-start.args'; [ \"$2\" = sys-backup ] || {{ echo \"qvm-start: error: no such domain: '$2'\" >&2; exit 1; }}",
            d.path().display()
        ),
    );
    let mut o = opts(d.path());
    o.qvm_start = Some(start);
    let spec = DestSpec::parse("qubes://sys-backup/mnt/usb", "").unwrap();
    connect(&spec, &o).unwrap().close().unwrap();
    let spec = DestSpec::parse("qubes://nosuch/mnt/usb", "").unwrap();
    let err = format!("{:#}", connect(&spec, &o).err().unwrap());
    assert!(
        err == format!(
            "cannot start VM nosuch for qubes://nosuch/mnt/usb: {}/qvm-start --skip-if-running nosuch \
             failed (exit status: 1): qvm-start: error: no such domain: 'nosuch'",
            d.path().display()
        ),
        "{err}"
    );
    assert_eq!(
        read(&d.path().join("qvm-start.args")),
        "--skip-if-running sys-backup\n--skip-if-running nosuch\n"
    );
    // The qrexec call was made only for the VM that started.
    assert_eq!(
        read(&d.path().join("qrexec.args")),
        "-d sys-backup DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0\n"
    );
}

#[test]
fn a_missing_qrexec_client_says_where_qubes_works() {
    let d = tempfile::tempdir().unwrap();
    let spec = DestSpec::parse("qubes://vm/mnt", "").unwrap();
    let err = format!("{:#}", connect(&spec, &opts(d.path())).err().unwrap());
    assert!(
        err.starts_with(&format!(
            "cannot run {}/qrexec-client for qubes://vm/mnt: No such file or directory",
            d.path().display()
        )) && err.ends_with(
            "qubes:// destinations work only in Qubes OS dom0 (SPARSEBAK_QREXEC_CLIENT overrides)"
        ),
        "{err}"
    );
}

#[test]
fn a_missing_qvm_start_says_where_qubes_works() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path());
    o.qvm_start = Some(d.path().join("qvm-start"));
    let spec = DestSpec::parse("qubes://vm/mnt", "").unwrap();
    let err = format!("{:#}", connect(&spec, &o).err().unwrap());
    assert_eq!(
        err,
        format!(
            "cannot start VM vm for qubes://vm/mnt: {}/qvm-start is not installed; qubes:// \
             destinations work only in Qubes OS dom0 (SPARSEBAK_QVM_START overrides; empty skips \
             starting the VM)",
            d.path().display()
        )
    );
}
