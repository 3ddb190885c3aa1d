//! Regression test for the agent that blocked forever under real qrexec:
//! dom0's qrexec-client died during a receive while requests it had sent
//! ahead sat unread on the agent's stdin, and qrexec kept the agent's
//! stdout open with nobody reading it. The real binary must give up after
//! `SPARSEBAK_AGENT_STALL_SECS` and exit (releasing files and lock), and
//! say why on stderr.

use crate::support::*;
use sparsebak_common::names::chunk_rel_path;
use sparsebak_common::proto::{write_frame, RawRequest as Request, Response};
use sparsebak_common::units::ByteOffset;
use sparsebak_testing::peer::Peer;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_reply_nobody_reads_ends_the_agent_after_the_stall_limit() {
    let fx = Fixture::new();
    fx.commit_session(S1, None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparsebak-agent"))
        .env("SPARSEBAK_AGENT_STALL_SECS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut peer = Peer::new(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    assert!(matches!(peer.hello(), Response::Hello { .. }));
    assert!(matches!(
        peer.open(&fx.dest_str(), &fx.mp_str(), false),
        Response::Opened { .. }
    ));
    peer.send(&Request::ReadFiles { vol: VOL.into() }).unwrap();
    // 64 KiB replies: far more than the pipe holds (the agent asks for 1 MiB).
    let path = format!("{S1}/{}", chunk_rel_path(ByteOffset(0x10000)));
    let started = Instant::now();
    for _ in 0..64 {
        write_frame(peer.writer(), path.as_bytes()).unwrap();
    }
    peer.writer().flush().unwrap();
    // Never read stdout, never close stdin: only the stall limit can end it.
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the agent is still blocked 30 s after its reader stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let said = stderr.join().unwrap();
    assert!(
        said.contains("sparsebak-agent: no reply could be written to sparsebak for 1 s (is it gone?): giving up"),
        "{said}"
    );
    drop(peer);
    // The archive is free again: a writer can open it.
    fx.agent(true).bye();
}

#[test]
fn a_closed_stderr_never_makes_the_agent_panic() {
    // An unknown option is reported on stderr; with stderr closed the agent
    // must still exit with its own code (2), not panic (101).
    let out = Command::new(env!("CARGO_BIN_EXE_sparsebak-agent"))
        .arg("--no-such-option")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_sparsebak-agent"))
        .arg("--version")
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(0));
    // Serving: EOF on stdin with both output streams gone.
    let out = Command::new(env!("CARGO_BIN_EXE_sparsebak-agent"))
        .stdin(Stdio::null())
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(0));
}

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> Stdio {
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    Stdio::from(w)
}
