//! The agent never blocks forever writing a reply.
//!
//! Under real qrexec, when dom0's qrexec-client dies during a receive or a
//! verify while requests it sent ahead still sit unread in qrexec's buffer
//! for the service's stdin, qrexec keeps the service's stdout open until
//! that stdin data drains, and nobody reads the stdout any more. An agent
//! blocked writing a reply would then hold its chunk files and the archive
//! lock for ever (the backup disk cannot be unmounted; over qubes-ssh the
//! relay's ssh and the remote agent hang too). docs/DESTINATIONS.md, "When
//! the link breaks".
//!
//! [`StallWriter`] splits writes into pieces of at most [`PIECE`] bytes and
//! notes when each piece started; [`watch`] runs a thread that calls its
//! `on_stall` when one piece has made no progress for the limit (the binary
//! then ends the process). Reading is never timed: dom0 may legitimately
//! think for a long time between requests, and EOF on stdin already ends
//! the agent.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one write may make no progress: long enough for any real link
/// (a [`PIECE`] in ten minutes is 110 bytes per second).
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// Environment variable overriding [`DEFAULT_LIMIT`] in whole seconds (the
/// test suites use a few seconds).
pub const LIMIT_ENV: &str = "SPARSEBAK_AGENT_STALL_SECS";
/// Largest single `write` handed to the pipe, so a blocked write means a
/// stalled reader, not a big reply.
pub const PIECE: usize = 64 * 1024;

/// The limit from [`LIMIT_ENV`] (a positive number of seconds), else the
/// default.
pub fn limit_from_env() -> Duration {
    std::env::var(LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIMIT)
}

/// When the write in progress started, as milliseconds since `base` plus
/// one; 0 while no write is in progress.
pub struct Progress {
    base: Instant,
    started: AtomicU64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            base: Instant::now(),
            started: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// How long the write in progress has been blocked, if one is.
    pub fn blocked_for(&self) -> Option<Duration> {
        match self.started.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis(self.now_ms().saturating_sub(t))),
        }
    }
}

/// A writer whose every write is watched by [`Progress`].
pub struct StallWriter<W> {
    inner: W,
    progress: Arc<Progress>,
}

impl<W: Write> StallWriter<W> {
    pub fn new(inner: W, progress: Arc<Progress>) -> Self {
        StallWriter { inner, progress }
    }
}

impl<W: Write> Write for StallWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = &buf[..buf.len().min(PIECE)];
        let p = &self.progress;
        p.started.store(p.now_ms(), Ordering::Release);
        let r = self.inner.write(piece);
        p.started.store(0, Ordering::Release);
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        let p = &self.progress;
        p.started.store(p.now_ms(), Ordering::Release);
        let r = self.inner.flush();
        p.started.store(0, Ordering::Release);
        r
    }
}

/// Start a thread that calls `on_stall` (once, with how long the write was
/// blocked) when a write watched by `progress` has made no progress for
/// `limit`. The thread lives as long as the process.
pub fn watch(
    progress: Arc<Progress>,
    limit: Duration,
    on_stall: impl FnOnce(Duration) + Send + 'static,
) {
    let tick = (limit / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
    std::thread::spawn(move || loop {
        std::thread::sleep(tick);
        if let Some(d) = progress.blocked_for().filter(|d| *d >= limit) {
            on_stall(d);
            return;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A writer that blocks until told to go on, taking at most `take`
    /// bytes per write.
    struct Gate {
        go: mpsc::Receiver<()>,
        seen: Vec<usize>,
    }
    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.go.recv().map_err(|_| io::Error::other("closed"))?;
            self.seen.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_blocked_write_is_reported_once_after_the_limit() {
        let (go_tx, go_rx) = mpsc::channel();
        let progress = Progress::new();
        let (tx, rx) = mpsc::channel();
        watch(progress.clone(), Duration::from_millis(200), move |d| {
            tx.send(d).unwrap()
        });
        let writer = std::thread::spawn({
            let progress = progress.clone();
            move || {
                let mut w = StallWriter::new(
                    Gate {
                        go: go_rx,
                        seen: vec![],
                    },
                    progress,
                );
                w.write_all(&[7u8; PIECE * 2 + 5]).unwrap();
                w.inner.seen
            }
        });
        let blocked = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no stall seen");
        assert!(blocked >= Duration::from_millis(200), "{blocked:?}");
        for _ in 0..3 {
            go_tx.send(()).unwrap();
        }
        // Writes are split into pieces of at most PIECE bytes.
        assert_eq!(writer.join().unwrap(), [PIECE, PIECE, 5]);
        assert!(progress.blocked_for().is_none());
    }

    #[test]
    fn writes_that_progress_are_never_a_stall() {
        let progress = Progress::new();
        let (tx, rx) = mpsc::channel();
        watch(progress.clone(), Duration::from_millis(100), move |d| {
            tx.send(d).unwrap()
        });
        let mut w = StallWriter::new(Vec::new(), progress);
        let end = Instant::now() + Duration::from_millis(400);
        while Instant::now() < end {
            w.write_all(&[1u8; 1000]).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn the_limit_comes_from_the_environment_or_the_default() {
        // Only this test touches the variable in this process.
        std::env::set_var(LIMIT_ENV, "3");
        assert_eq!(limit_from_env(), Duration::from_secs(3));
        for bad in ["0", "x", "-1", ""] {
            std::env::set_var(LIMIT_ENV, bad);
            assert_eq!(limit_from_env(), DEFAULT_LIMIT, "{bad:?}");
        }
        std::env::remove_var(LIMIT_ENV);
        assert_eq!(limit_from_env(), DEFAULT_LIMIT);
    }
}
