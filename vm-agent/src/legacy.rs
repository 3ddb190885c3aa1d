//! Serving a sparsebak 0.2 archive, read-only (docs/FORMAT.md §14).
//!
//! 0.2 stored chunks under `<dest>/sparsebak/default/<vol>/S_<ts>/<9hex>/x<16hex>`
//! and had no header, no lock and no agent. The agent serves exactly those
//! chunk files and nothing else: it creates no file (not even a lock), takes
//! no lock, accepts no request but `ReadFiles` and `Bye` once a 0.2 archive is
//! open, validates every requested path against the 0.2 layout, opens each
//! component with `O_NOFOLLOW` and serves regular files only, each bounded by
//! the frame limit. The hashes that make the data trustworthy live in dom0's
//! local metadata; the agent never reads 0.2 metadata at all.

use crate::archive::Archive;
use crate::error::{AgentError, Result};
use crate::read::open_regular;
use sparsebak_common::legacy::{parse_legacy_chunk_path, LegacyVolName, LEGACY_SET_DIR};
use sparsebak_common::proto::{
    read_frame, write_frame, ErrorKind, Request, FILE_DATA, FILE_MISSING, FILE_REFUSED, MAX_FRAME,
};
use std::io::{self, Read, Write};
use std::path::Path;

/// `<dest>/sparsebak/default` must be a real directory (not a symlink).
pub fn check_set_dir(archive_dir: &Path) -> Result<()> {
    let set = archive_dir.join(LEGACY_SET_DIR);
    for d in [archive_dir, set.as_path()] {
        match d.symlink_metadata() {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(AgentError::invalid(format!(
                    "{} is not a directory (a symlink or a file); refusing to read a sparsebak 0.2 archive through it",
                    d.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(AgentError::new(
                    ErrorKind::NotFound,
                    format!("no sparsebak 0.2 archive at {} (no such directory)", set.display()),
                ))
            }
            Err(e) => return Err(AgentError::io(format_args!("cannot stat {}", d.display()), e)),
        }
    }
    Ok(())
}

/// The requests a 0.2 archive may receive once open.
pub fn allowed(req: &Request) -> Result<()> {
    match req {
        Request::Hello { .. }
        | Request::Open { .. }
        | Request::OpenLegacy { .. }
        | Request::ReadFiles { .. }
        | Request::Bye => Ok(()),
        _ => Err(AgentError::invalid(
            "the open archive is a sparsebak 0.2 archive, which is read-only: only ReadFiles is accepted",
        )),
    }
}

/// One reply frame for one requested path.
fn reply_for(a: &Archive, vol: &LegacyVolName, p: &str, buf: &mut Vec<u8>) {
    buf.clear();
    if let Err(e) = parse_legacy_chunk_path(p) {
        buf.push(FILE_REFUSED);
        buf.extend_from_slice(format!("refused path {p:?}: {e}").as_bytes());
        return;
    }
    let rel = format!("{LEGACY_SET_DIR}/{vol}/{p}");
    let res = open_regular(&a.dir, &rel).and_then(|f| match f {
        None => Ok(false),
        Some(f) => {
            buf.push(FILE_DATA);
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

/// Answer a stream of 0.2 chunk paths, one reply frame each, until the empty frame.
pub fn read_files<R: Read, W: Write>(a: &Archive, vol: &str, r: &mut R, w: &mut W) -> Result<()> {
    let vol = LegacyVolName::new(vol).map_err(|e| AgentError::invalid(e.to_string()))?;
    let mut buf = Vec::new();
    loop {
        let frame = read_frame(r, 4096).map_err(|e| AgentError::io("reading path requests", e))?;
        let frame = match frame {
            None => return Err(AgentError::invalid("pipe closed inside a ReadFiles stream")),
            Some(f) if f.is_empty() => return Ok(()),
            Some(f) => f,
        };
        reply_for(a, &vol, &String::from_utf8_lossy(&frame), &mut buf);
        write_frame(w, &buf)
            .and_then(|_| w.flush())
            .map_err(|e| AgentError::io("writing file reply", e))?;
    }
}
