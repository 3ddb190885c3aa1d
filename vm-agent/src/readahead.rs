//! Read-ahead for `ReadFiles`: dom0 keeps thousands of path requests in
//! flight, so most of them already sit in the agent's input buffer while it
//! answers the current one. Opening the next few files and asking the kernel
//! to read them (`POSIX_FADV_WILLNEED`) keeps several disk reads queued
//! instead of one at a time, which is what limits a cold-cache restore.
//!
//! Only complete frames already buffered are looked at (never blocking on
//! the pipe), each path goes through the same checks and `O_NOFOLLOW` open
//! as a normal request, and replies stay strictly in request order: a file
//! opened ahead is only used for the request it was opened for.

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use std::collections::VecDeque;
use std::fs::File;

/// Files opened ahead at most.
pub const WINDOW: usize = 64;

/// The payloads of the complete frames at the start of `buf`, after skipping
/// `skip` of them, at most `max`; stops at the end-of-stream frame, at an
/// incomplete frame and at one longer than `max_len`.
pub fn buffered_frames(buf: &[u8], skip: usize, max: usize, max_len: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut seen = 0usize;
    while out.len() < max {
        let Some(head) = buf.get(at..at + 4) else {
            break;
        };
        let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
        if len == 0 || len > max_len {
            break;
        }
        let Some(payload) = buf.get(at + 4..at + 4 + len) else {
            break;
        };
        if seen >= skip {
            out.push(payload);
        }
        seen += 1;
        at += 4 + len;
    }
    out
}

/// Requests seen ahead, in order, with the file opened for each (if it
/// could be opened as a plain chunk file).
#[derive(Default)]
pub struct ReadAhead {
    ahead: VecDeque<(Vec<u8>, Option<File>)>,
}

impl ReadAhead {
    /// The file opened ahead for `path`, the request being answered now.
    /// Anything out of step is dropped (it cannot happen with frames taken
    /// from the same buffer, but a wrong guess must never serve a file).
    pub fn take(&mut self, path: &[u8]) -> Option<File> {
        match self.ahead.pop_front() {
            Some((p, f)) if p == path => f,
            Some(_) => {
                self.ahead.clear();
                None
            }
            None => None,
        }
    }

    /// Look at the frames buffered after the current request and open the
    /// ones not yet seen, up to [`WINDOW`], with `open`.
    pub fn top_up(&mut self, buffered: &[u8], max_len: usize, open: impl Fn(&str) -> Option<File>) {
        let want = WINDOW.saturating_sub(self.ahead.len());
        if want == 0 {
            return;
        }
        for p in buffered_frames(buffered, self.ahead.len(), want, max_len) {
            let f = std::str::from_utf8(p).ok().and_then(&open);
            if let Some(f) = &f {
                // Advice only: a failure costs nothing but the read-ahead.
                let _ = posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_WILLNEED);
            }
            self.ahead.push_back((p.to_vec(), f));
        }
    }

    pub fn len(&self) -> usize {
        self.ahead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ahead.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(paths: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in paths {
            v.extend_from_slice(&(p.len() as u32).to_be_bytes());
            v.extend_from_slice(p.as_bytes());
        }
        v
    }

    #[test]
    fn only_complete_frames_before_the_end_are_seen() {
        let mut b = frames(&["a", "bb", "ccc"]);
        assert_eq!(buffered_frames(&b, 0, 10, 100), [&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(buffered_frames(&b, 1, 1, 100), [&b"bb"[..]]);
        assert_eq!(buffered_frames(&b, 3, 10, 100), Vec::<&[u8]>::new());
        b.truncate(b.len() - 1); // "ccc" incomplete
        assert_eq!(buffered_frames(&b, 0, 10, 100), [&b"a"[..], b"bb"]);
        let mut e = frames(&["a"]);
        e.extend_from_slice(&[0, 0, 0, 0]); // end of stream
        e.extend_from_slice(&frames(&["after-end"]));
        assert_eq!(buffered_frames(&e, 0, 10, 100), [&b"a"[..]]);
        let big = frames(&["a", "toolong"]);
        assert_eq!(buffered_frames(&big, 0, 10, 3), [&b"a"[..]]);
        assert_eq!(buffered_frames(&[0, 0], 0, 10, 100), Vec::<&[u8]>::new());
    }

    #[test]
    fn files_are_used_only_for_their_own_request() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(dir.path().join(n), n).unwrap();
        }
        let open = |p: &str| File::open(dir.path().join(p)).ok();
        let mut ra = ReadAhead::default();
        ra.top_up(&frames(&["a", "b"]), 100, open);
        assert_eq!(ra.len(), 2);
        let mut s = String::new();
        use std::io::Read;
        ra.take(b"a").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "a");
        // "b" is still ahead; the buffer now starts at "b" and adds "c".
        ra.top_up(&frames(&["b", "c"]), 100, open);
        assert_eq!(ra.len(), 2);
        // Out of step: nothing is served and the queue is dropped.
        assert!(ra.take(b"c").is_none());
        assert!(ra.is_empty());
        // Unopenable paths are remembered as such.
        ra.top_up(&frames(&["missing"]), 100, open);
        assert!(ra.take(b"missing").is_none());
    }
}
