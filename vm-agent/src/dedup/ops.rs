//! `Dedup`: replace duplicate chunk files by hard links to the kept copy
//! (`arch-deduplicate`).
//!
//! For each operation (keep, dup, sha256): both must be chunk files of
//! committed sessions; if they already are one inode nothing happens; the
//! kept copy must hash to sha256, otherwise the duplicate is left alone and
//! the damage reported (a damaged copy never replaces a good one). Then keep
//! is linked to `x<addr>.dedup-tmp` in dup's directory and renamed over dup:
//! the duplicate's path always names a complete file, before, during and
//! after, so a crash at any point leaves a valid archive.

use super::{check_hash, committed_fanout, describe, file_name, open_chunk, same_inode_at, Opened};
use crate::dirfd;
use crate::error::{AgentError, Result};
use crate::fsutil::syncfs;
use crate::open_archive::Archive;
use crate::prune_apply::{settle, Use};
use nix::errno::Errno;
use sparsebak_common::linkref::{ChunkLoc, DedupOp};
use sparsebak_common::proto::{ErrorKind, MAX_PROBLEMS};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};

/// Suffix of the temporary link renamed over a duplicate.
pub const TMP_LINK_SUFFIX: &str = ".dedup-tmp";
/// Longest operation line accepted.
const MAX_LINE: usize = 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deduped {
    pub linked: u64,
    pub already: u64,
    pub bytes_saved: u64,
    pub problem_count: u64,
    pub problems: Vec<String>,
}

impl Deduped {
    fn problem(&mut self, msg: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(msg);
        }
    }
}

/// Carry out the operations of a `Dedup` stream.
pub fn dedup<R: Read>(a: &Archive, stream: R) -> Result<Deduped> {
    a.require_write()?;
    let max = a.header()?.chunk_size.max_stored();
    let mut out = Deduped::default();
    let mut settled = HashSet::new();
    let mut r = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| AgentError::io("reading dedup operations", e))?;
        if n == 0 {
            break;
        }
        if line.pop() != Some(b'\n') {
            return Err(AgentError::invalid(
                "dedup operation line too long or unterminated",
            ));
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| AgentError::invalid("dedup operation is not UTF-8"))?;
        let op = DedupOp::parse(text).map_err(AgentError::invalid)?;
        for v in [&op.keep.vol, &op.dup.vol] {
            if settled.insert(v.clone()) {
                settle(a, v, Use::Data)?;
            }
        }
        one(a, &op, max, &mut out)?;
    }
    syncfs(&a.dir)?;
    Ok(out)
}

/// Open a chunk location; `Err(msg)` is a problem to report, not a failure.
fn open_loc(
    a: &Archive,
    loc: &ChunkLoc,
    max: u64,
    role: &str,
) -> Result<std::result::Result<Opened, String>> {
    let what = describe(a, loc);
    let dir = match committed_fanout(a, loc) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Err(format!("{role} {what} is missing"))),
        Err(e) => return Ok(Err(format!("{role} {what}: {e}"))),
    };
    match open_chunk(dir, &file_name(loc), max, &what) {
        Ok(Some(o)) => Ok(Ok(o)),
        Ok(None) => Ok(Err(format!("{role} {what} is missing"))),
        Err(e) if e.kind == ErrorKind::Io || e.kind == ErrorKind::NoSpace => Err(e),
        Err(e) => Ok(Err(format!("{role}: {}", e.message))),
    }
}

fn one(a: &Archive, op: &DedupOp, max: u64, out: &mut Deduped) -> Result<()> {
    let keep = match open_loc(a, &op.keep, max, "kept file")? {
        Ok(k) => k,
        Err(m) => {
            out.problem(m);
            return Ok(());
        }
    };
    let dup = match open_loc(a, &op.dup, max, "duplicate")? {
        Ok(d) => d,
        Err(m) => {
            out.problem(m);
            return Ok(());
        }
    };
    if keep.stat.st_dev == dup.stat.st_dev && keep.stat.st_ino == dup.stat.st_ino {
        out.already += 1;
        return Ok(());
    }
    let kwhat = describe(a, &op.keep);
    let dwhat = describe(a, &op.dup);
    if let Err(e) = check_hash(&keep, &op.sha256, &format!("kept copy {kwhat}")) {
        if e.kind != ErrorKind::Mismatch {
            return Err(e);
        }
        out.problem(format!("{}; {dwhat} was not replaced", e.message));
        return Ok(());
    }
    let tmp = format!("{}{TMP_LINK_SUFFIX}", dup.name);
    match dirfd::optional(dirfd::unlink(&dup.dir, &tmp)) {
        Ok(_) => {}
        Err(e) => {
            return Err(AgentError::io(
                format_args!("cannot remove stale {tmp}"),
                e.into(),
            ))
        }
    }
    match dirfd::link(&keep.dir, &keep.name, &dup.dir, &tmp) {
        Ok(()) => {}
        Err(e) if e.errno == Errno::EMLINK => {
            crate::say::say(format_args!(
                "{kwhat} has too many links; {dwhat} kept as it is"
            ));
            return Ok(());
        }
        Err(e) => {
            return Err(AgentError::io(
                format_args!("cannot link {kwhat} beside {dwhat}"),
                e.into(),
            ))
        }
    }
    let same = same_inode_at(&dup.dir, &tmp, &keep.stat)
        .map_err(|e| AgentError::io(format_args!("cannot stat {tmp}"), e))?;
    if !same {
        let _ = dirfd::unlink(&dup.dir, &tmp);
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!("{kwhat} was replaced while it was being linked"),
        ));
    }
    dirfd::rename(&dup.dir, &tmp, &dup.dir, &dup.name)
        .map_err(|e| AgentError::io(format_args!("cannot replace {dwhat}"), e.into()))?;
    out.linked += 1;
    if dup.stat.st_nlink == 1 {
        out.bytes_saved += dup.stat.st_size as u64;
    }
    Ok(())
}
