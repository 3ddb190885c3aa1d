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

use crate::error::{AgentError, Result};
use crate::open_archive::Archive;
use crate::read::{serve_paths, PathResolver};
use sparsebak_common::legacy::{parse_legacy_chunk_path, LegacyVolName, LEGACY_SET_DIR};
use sparsebak_common::proto::RawRequest;
use std::io::{self, BufReader, Read, Write};

/// The requests a 0.2 archive may receive once open.
pub fn allowed(req: &RawRequest) -> Result<()> {
    match req {
        RawRequest::Hello { .. }
        | RawRequest::Open { .. }
        | RawRequest::OpenLegacy { .. }
        | RawRequest::ReadFiles { .. }
        | RawRequest::Bye => Ok(()),
        _ => Err(AgentError::invalid(
            "the open archive is a sparsebak 0.2 archive, which is read-only: only ReadFiles is accepted",
        )),
    }
}

/// 0.2's layout: `default/<vol>/S_<ts>/<9hex>/x<16hex>` chunk files only.
struct Legacy {
    vol: LegacyVolName,
}

impl PathResolver for Legacy {
    fn resolve(&self, p: &str) -> std::result::Result<String, String> {
        parse_legacy_chunk_path(p).map_err(|e| e.to_string())?;
        Ok(format!("{LEGACY_SET_DIR}/{}/{p}", self.vol))
    }
    fn no_file(&mut self, _: &str, _: &mut Vec<u8>) -> io::Result<bool> {
        Ok(false)
    }
}

/// Answer a stream of 0.2 chunk paths, one reply frame each, until the
/// empty frame (the loop our archives use, without read-ahead).
pub fn read_files<R: Read, W: Write>(
    a: &Archive,
    vol: &LegacyVolName,
    r: &mut BufReader<R>,
    w: &mut W,
) -> Result<()> {
    let vol = vol.clone();
    serve_paths(a, &mut Legacy { vol }, None, r, w)
}
