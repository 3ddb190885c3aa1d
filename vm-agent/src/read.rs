//! Serving files for receive and verify. Only paths the layout could have
//! produced are served: `S_…/<9hex>/x<16hex>`, `S_…/manifest`, `S_…/info.json`
//! of a committed session; never through a symlink, never a non-regular file.

use crate::archive::Archive;
use crate::error::Result;
use crate::store::parse_vol;
use sparsebak_common::names::{parse_chunk_rel_path, SessionName};
use sparsebak_common::proto::{
    read_frame, write_frame, FILE_DATA, FILE_MISSING, FILE_REFUSED, MAX_FRAME,
};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Check a requested path; `Err` is the refusal message.
fn check_path(p: &str) -> std::result::Result<(), String> {
    let (ses, rest) = p
        .split_once('/')
        .ok_or_else(|| format!("path {p:?} has no session component"))?;
    SessionName::new(ses).map_err(|e| e.to_string())?;
    if rest == MANIFEST_FILE || rest == SESSION_INFO_FILE {
        return Ok(());
    }
    parse_chunk_rel_path(rest)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn open_regular(path: &Path) -> io::Result<Option<File>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(Some(f))
}

/// One reply frame for one path.
fn reply_for(vdir: &Path, p: &str, buf: &mut Vec<u8>) {
    buf.clear();
    if let Err(msg) = check_path(p) {
        buf.push(FILE_REFUSED);
        buf.extend_from_slice(msg.as_bytes());
        return;
    }
    let path = vdir.join(p);
    let res = open_regular(&path).and_then(|f| match f {
        None => Ok(false),
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
            buf.extend_from_slice(format!("cannot read {p}: {e}").as_bytes());
        }
    }
}

/// Answer a stream of path frames, one reply frame each, until the empty frame.
pub fn read_files<R: Read, W: Write>(a: &Archive, vol: &str, r: &mut R, w: &mut W) -> Result<()> {
    a.header()?;
    let vdir = a.vol_dir(&parse_vol(vol)?);
    let mut buf = Vec::new();
    loop {
        let frame = read_frame(r, 4096)
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
        let p = String::from_utf8_lossy(&frame);
        reply_for(&vdir, &p, &mut buf);
        write_frame(w, &buf)
            .and_then(|_| w.flush())
            .map_err(|e| crate::error::AgentError::io("writing file reply", e))?;
    }
    Ok(())
}
