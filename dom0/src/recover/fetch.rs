//! Fetching metadata files from the destination in `ReadMeta` pieces: small
//! files into memory (bounded), manifests straight into a file, hashed on
//! the way, so no manifest is ever held in memory whatever its size.

use crate::dest::client::{Answer, DestError};
use crate::dest::AgentConn;
use anyhow::{bail, Context, Result};
use sha2::Digest as _;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::ErrorKind;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Read a whole file of at most `max` bytes; `None` if the destination has
/// no such file.
pub fn small(conn: &mut AgentConn, vol: &VolName, path: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let r = each_piece(conn, vol, path, max, |data| {
        out.extend_from_slice(data);
        Ok(())
    })?;
    match r {
        Ok(_) => Ok(Some(out)),
        Err(refused) if refused.kind == ErrorKind::NotFound => Ok(None),
        Err(refused) => Err(cannot_fetch(refused, vol, path)),
    }
}

/// The agent refused a piece of `path`: its error, saying what was fetched.
fn cannot_fetch(refused: DestError, vol: &VolName, path: &str) -> anyhow::Error {
    anyhow::Error::from(refused).context(format!("volume {vol}: cannot fetch {path}"))
}

/// Stream `path` (at most `max` bytes) into a new file `to`, fsync it, and
/// return its length and sha256.
pub fn to_file(
    conn: &mut AgentConn,
    vol: &VolName,
    path: &str,
    max: u64,
    to: &Path,
) -> Result<(u64, [u8; 32])> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut h = sha2::Sha256::new();
    let size = each_piece(conn, vol, path, max, |data| {
        h.update(data);
        f.write_all(data)
            .with_context(|| format!("cannot write {}", to.display()))
    })?
    .map_err(|refused| cannot_fetch(refused, vol, path))?;
    f.sync_all()
        .with_context(|| format!("cannot fsync {}", to.display()))?;
    Ok((size, h.finalize().into()))
}

/// Ask for `path` piece by piece, handing each to `sink`; the file's size
/// must be at most `max` and stay the same throughout. Returns the size, or
/// the agent's refusal of a piece.
fn each_piece(
    conn: &mut AgentConn,
    vol: &VolName,
    path: &str,
    max: u64,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<Answer<u64>> {
    let mut offset = 0u64;
    let mut size = None;
    loop {
        let p = match conn
            .read_meta(vol, path, offset)
            .with_context(|| format!("volume {vol}: cannot fetch {path}"))?
        {
            Ok(p) => p,
            Err(refused) => return Ok(Err(refused)),
        };
        match size {
            None if p.size > max => bail!(
                "volume {vol}: {path} on the destination is {} bytes, more than the {max} it can be",
                p.size
            ),
            Some(s) if s != p.size => bail!(
                "volume {vol}: {path} changed size on the destination while it was read ({s}, then {})",
                p.size
            ),
            _ => size = Some(p.size),
        }
        if p.data.is_empty() {
            if offset != p.size {
                bail!("volume {vol}: the destination sent no bytes of {path} at offset {offset} of {}", p.size);
            }
            return Ok(Ok(p.size));
        }
        sink(&p.data)?;
        offset += p.data.len() as u64;
        if offset == p.size {
            return Ok(Ok(p.size));
        }
    }
}
