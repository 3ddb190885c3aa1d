//! The transport process that carries the agent pipe (the local agent, ssh,
//! qrexec-client): the streaming counterpart of [`crate::process`], which
//! runs short commands such as qvm-start.
//!
//! The child's stdin and stdout are the pipe. Its stderr is read on a thread
//! so it can never stall the child: every byte is passed through to our
//! stderr as it arrives (agent and ssh messages reach the user unchanged) and
//! the tail is kept, so that when the link fails the error can quote what the
//! child said last.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How much of a child's stderr is kept for error messages.
const TAIL_BYTES: usize = 8192;

#[derive(Default)]
struct TailState {
    bytes: VecDeque<u8>,
    done: bool,
}

/// The end of a child's stderr, filled by the reader thread.
#[derive(Default)]
struct Tail {
    state: Mutex<TailState>,
    cv: Condvar,
}

impl Tail {
    fn push(&self, data: &[u8]) {
        let mut s = self.state.lock().expect("tail lock");
        s.bytes.extend(data);
        let extra = s.bytes.len().saturating_sub(TAIL_BYTES);
        s.bytes.drain(..extra);
    }

    fn finish(&self) {
        self.state.lock().expect("tail lock").done = true;
        self.cv.notify_all();
    }

    /// The text so far, after waiting up to `grace` for the stream to end.
    fn text(&self, grace: Duration) -> String {
        let s = self.state.lock().expect("tail lock");
        let (s, _) = self
            .cv
            .wait_timeout_while(s, grace, |s| !s.done)
            .expect("tail lock");
        let bytes: Vec<u8> = s.bytes.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Read `r` to its end, forwarding to our stderr and keeping the tail.
fn spawn_reader(mut r: impl Read + Send + 'static, tail: Arc<Tail>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(&buf[..n]);
                    let _ = e.flush();
                    drop(e);
                    tail.push(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        tail.finish();
    });
}

/// Ask for a 1 MiB pipe buffer (the default limit of unprivileged
/// processes) so the far end can run several replies ahead while we verify;
/// a refusal leaves the pipe as it is.
fn enlarge_pipe(p: &impl std::os::fd::AsFd) {
    use nix::fcntl::{fcntl, FcntlArg};
    let _ = fcntl(p.as_fd(), FcntlArg::F_SETPIPE_SZ(1 << 20));
}

/// How a child ended, with the last things it said on stderr.
#[derive(Debug, Clone)]
pub struct Ended {
    /// `None` when it did not exit by itself within the grace period and was killed.
    pub status: Option<ExitStatus>,
    pub stderr: String,
}

impl Ended {
    /// The last few non-empty lines of stderr, for quoting in a message.
    pub fn last_lines(&self, n: usize) -> String {
        last_lines(&self.stderr, n)
    }
}

/// The last `n` non-empty lines of `text`, joined with " / ", at most 600 bytes.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines[lines.len().saturating_sub(n)..].join(" / ");
    if joined.len() <= 600 {
        return joined;
    }
    let mut cut = joined.len() - 600;
    while !joined.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &joined[cut..])
}

/// Describe an exit status in words: "exited with status 3", "was killed by signal 9".
pub fn status_words(st: &ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended ({st})"),
    }
}

/// A running child whose stdin and stdout carry the agent protocol.
pub struct Link {
    child: Child,
    tail: Arc<Tail>,
    ended: Option<Ended>,
}

impl Link {
    /// Start `cmd` with piped stdin/stdout and a watched stderr.
    pub fn spawn(mut cmd: Command) -> std::io::Result<(Link, ChildStdin, ChildStdout)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        enlarge_pipe(&stdin);
        enlarge_pipe(&stdout);
        let tail = Arc::new(Tail::default());
        spawn_reader(child.stderr.take().expect("piped stderr"), tail.clone());
        Ok((
            Link {
                child,
                tail,
                ended: None,
            },
            stdin,
            stdout,
        ))
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `grace` for the child to exit by itself (its stdin should be
    /// closed first), then kill it. Idempotent.
    pub fn end(&mut self, grace: Duration) -> Ended {
        if let Some(e) = &self.ended {
            return e.clone();
        }
        let deadline = Instant::now() + grace;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        // Grandchildren (a relay's ssh) may hold stderr a moment longer.
        let stderr = self.tail.text(Duration::from_millis(500));
        let e = Ended { status, stderr };
        self.ended = Some(e.clone());
        e
    }

    /// Kill the child now (no-op if it has ended).
    pub fn kill(&mut self) {
        self.end(Duration::ZERO);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn link_reports_status_and_stderr_tail() {
        let (mut link, stdin, _out) =
            Link::spawn(sh("echo one >&2; echo 'two: broken' >&2; exit 7")).unwrap();
        drop(stdin);
        let e = link.end(Duration::from_secs(10));
        assert_eq!(e.status.and_then(|s| s.code()), Some(7));
        assert_eq!(e.last_lines(1), "two: broken");
        assert_eq!(e.last_lines(5), "one / two: broken");
    }

    #[test]
    fn link_kills_a_child_that_does_not_exit() {
        let (mut link, _stdin, _out) = Link::spawn(sh("exec sleep 30")).unwrap();
        let t = Instant::now();
        let e = link.end(Duration::from_millis(100));
        assert!(e.status.is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn link_sees_a_signal() {
        let (mut link, _stdin, _out) = Link::spawn(sh("kill -9 $$")).unwrap();
        let e = link.end(Duration::from_secs(10));
        assert_eq!(status_words(&e.status.unwrap()), "was killed by signal 9");
    }

    #[test]
    fn last_lines_is_bounded() {
        let long = "x".repeat(2000);
        let l = last_lines(&long, 1);
        assert!(l.starts_with('…') && l.len() <= 604, "{}", l.len());
    }
}
