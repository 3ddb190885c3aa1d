//! Serving files for receive and verify. Only paths the layout could have
//! produced are served: `S_…/<9hex>/x<16hex>`, `S_…/manifest`, `S_…/info.json`
//! of a committed session; never through a symlink, never a non-regular file.

use crate::dirfd::open_regular;
use crate::error::Result;
use crate::open_archive::{Archive, VOLUMES_DIR};
use crate::readahead::ReadAhead;
use crate::tarsession::TarReads;
use sparsebak_common::names::{parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::{
    read_frame, write_frame, FILE_DATA, FILE_MISSING, FILE_REFUSED, MAX_FRAME,
};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

/// Split a requested `S_…/REST` path, checking the session name; `no_session`
/// is the refusal message for a path without one. Shared by `ReadFiles` and
/// `ReadMeta` (crate::read_meta).
pub(crate) fn session_rest(
    p: &str,
    no_session: impl FnOnce() -> String,
) -> std::result::Result<&str, String> {
    let (ses, rest) = p.split_once('/').ok_or_else(no_session)?;
    SessionName::new(ses).map_err(|e| e.to_string())?;
    Ok(rest)
}

/// `rest` names a session's manifest or info.json.
pub(crate) fn is_session_meta(rest: &str) -> bool {
    rest == MANIFEST_FILE || rest == SESSION_INFO_FILE
}

/// Check a requested path; `Err` is the refusal message.
pub(crate) fn check_path(p: &str) -> std::result::Result<(), String> {
    let rest = session_rest(p, || format!("path {p:?} has no session component"))?;
    if is_session_meta(rest) {
        return Ok(());
    }
    parse_chunk_rel_path(rest)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What differs between the archives `ReadFiles` serves: which requested
/// paths the layout could have produced, where they live, and what serves a
/// path with no file. Our archives ([`Ours`]) and sparsebak 0.2's
/// (`crate::legacy`) share [`serve_paths`].
pub(crate) trait PathResolver {
    /// The path under the archive dir for a requested path, built from
    /// checked names only; `Err` is the refusal message.
    fn resolve(&self, p: &str) -> std::result::Result<String, String>;
    /// No file exists for `p`: push `FILE_DATA` and its bytes into `buf` and
    /// return `true`, or return `false` (missing).
    fn no_file(&mut self, p: &str, buf: &mut Vec<u8>) -> io::Result<bool>;
}

/// Our layout: chunk files, else the session's tar parts.
struct Ours<'a> {
    a: &'a Archive,
    vol: VolName,
    tars: TarReads,
}

impl PathResolver for Ours<'_> {
    fn resolve(&self, p: &str) -> std::result::Result<String, String> {
        check_path(p)?;
        Ok(format!("{VOLUMES_DIR}/{}/{p}", self.vol))
    }
    fn no_file(&mut self, p: &str, buf: &mut Vec<u8>) -> io::Result<bool> {
        from_parts(self.a, &self.vol, p, buf, &mut self.tars)
    }
}

/// A chunk path of no folder chunk file: serve it from the session's tar
/// parts, if any (FORMAT.md §13).
fn from_parts(
    a: &Archive,
    vol: &VolName,
    p: &str,
    buf: &mut Vec<u8>,
    tars: &mut TarReads,
) -> io::Result<bool> {
    let (ses, rest) = p.split_once('/').expect("checked path");
    let (Ok(s), Ok(addr)) = (SessionName::new(ses), parse_chunk_rel_path(rest)) else {
        return Ok(false); // manifest or info.json
    };
    buf.push(FILE_DATA);
    tars.read(&a.dir, vol, &s, addr, buf)
}

/// Open a requested path ahead of its turn, if it is a valid path of an
/// existing regular file; anything else is left to [`reply_for`].
fn open_ahead(a: &Archive, res: &impl PathResolver, p: &str) -> Option<File> {
    let rel = res.resolve(p).ok()?;
    open_regular(&a.dir, &rel).ok().flatten()
}

/// One reply frame for one path; `pre` is the file [`ReadAhead`] opened for
/// it, through the same checks.
fn reply_for(
    a: &Archive,
    res: &mut impl PathResolver,
    p: &str,
    buf: &mut Vec<u8>,
    pre: Option<File>,
) {
    buf.clear();
    let rel = match res.resolve(p) {
        Ok(rel) => rel,
        Err(msg) => {
            buf.push(FILE_REFUSED);
            buf.extend_from_slice(format!("refused path {p:?}: {msg}").as_bytes());
            return;
        }
    };
    let opened = match pre {
        Some(f) => Ok(Some(f)),
        None => open_regular(&a.dir, &rel),
    };
    let res = opened.and_then(|f| match f {
        None => res.no_file(p, buf),
        Some(f) => {
            buf.push(FILE_DATA);
            // Read one byte past the limit so an oversized file is detected.
            let n = f.take(MAX_FRAME as u64).read_to_end(buf)?;
            if n >= MAX_FRAME - 1 {
                return Err(io::Error::other("file is larger than the protocol allows"));
            }
            Ok(true)
        }
    });
    match res {
        Ok(true) => {}
        Ok(false) => {
            buf.clear();
            buf.push(FILE_MISSING);
        }
        Err(e) => {
            buf.clear();
            buf.push(FILE_REFUSED);
            buf.extend_from_slice(format!("cannot read {p:?}: {e}").as_bytes());
        }
    }
}

/// Longest path request accepted.
const MAX_PATH_FRAME: usize = 4096;

/// Answer a stream of path frames, one reply frame each, until the empty
/// frame. Requests already buffered are opened ahead ([`ReadAhead`]).
pub fn read_files<R: Read, W: Write>(
    a: &Archive,
    vol: &VolName,
    r: &mut BufReader<R>,
    w: &mut W,
) -> Result<()> {
    let tars = TarReads::new(a.header()?.chunk_size.max_stored());
    let vol = vol.clone();
    let mut res = Ours { a, vol, tars };
    serve_paths(a, &mut res, Some(ReadAhead::default()), r, w)
}

/// The `ReadFiles` loop: read path frames until the empty one and answer
/// each with one reply frame, in order. With `ahead`, requests already
/// buffered are opened early through the same checks.
pub(crate) fn serve_paths<R: Read, W: Write>(
    a: &Archive,
    res: &mut impl PathResolver,
    mut ahead: Option<ReadAhead>,
    r: &mut BufReader<R>,
    w: &mut W,
) -> Result<()> {
    let mut buf = Vec::new();
    loop {
        let frame = read_frame(r, MAX_PATH_FRAME)
            .map_err(|e| crate::error::AgentError::io("reading path requests", e))?;
        let frame = match frame {
            None => {
                return Err(crate::error::AgentError::invalid(
                    "pipe closed inside a ReadFiles stream",
                ))
            }
            Some(f) if f.is_empty() => break,
            Some(f) => f,
        };
        let pre = match ahead.as_mut() {
            Some(ah) => {
                let pre = ah.take(&frame);
                let resolver = &*res;
                ah.top_up(r.buffer(), MAX_PATH_FRAME, |p| open_ahead(a, resolver, p));
                pre
            }
            None => None,
        };
        let p = String::from_utf8_lossy(&frame);
        reply_for(a, res, &p, &mut buf, pre);
        // Flush only before the next read could block: while complete
        // requests are buffered, replies collect in the writer and reach the
        // pipe in large writes instead of one wake-up of dom0 per chunk.
        write_frame(w, &buf)
            .and_then(|_| {
                if frame_buffered(r.buffer()) {
                    Ok(())
                } else {
                    w.flush()
                }
            })
            .map_err(|e| crate::error::AgentError::io("writing file reply", e))?;
    }
    Ok(())
}

/// `buf` starts with a complete frame, so reading it cannot block.
pub(crate) fn frame_buffered(buf: &[u8]) -> bool {
    buf.get(..4).is_some_and(|head| {
        let len = u32::from_be_bytes(head.try_into().expect("4 bytes")) as usize;
        buf.len() - 4 >= len
    })
}

#[cfg(test)]
mod tests {
    use super::frame_buffered;

    #[test]
    fn a_frame_is_buffered_only_when_complete() {
        assert!(!frame_buffered(b""));
        assert!(!frame_buffered(&[0, 0, 0]));
        assert!(frame_buffered(&[0, 0, 0, 0]));
        assert!(!frame_buffered(&[0, 0, 0, 3, b'a', b'b']));
        assert!(frame_buffered(&[0, 0, 0, 3, b'a', b'b', b'c']));
        assert!(frame_buffered(&[0, 0, 0, 1, b'a', 0, 0]));
        assert!(!frame_buffered(&[255, 255, 255, 255, 1]));
    }
}
