//! arch-recover of a format 2 archive: the destination's volume dirs have
//! hidden names and every metadata file is sealed. Each file is fetched
//! within the bound of its sealed form, opened (authenticated to its kind,
//! volume and session) and only then checked like a format 1 file; the
//! volume's real name comes from its sealed `volume.json` and must hash to
//! the dir it was found in. For format 1 ([`MetaSeal`] without keys) these
//! are the plain fetches.

use super::fetch;
use crate::crypto::sealed::{max_sealed_len, MetaKind};
use crate::dest::AgentConn;
use crate::metaseal::MetaSeal;
use anyhow::{bail, Context, Result};
use sha2::Digest as _;
use sparsebak_common::names::{SessionName, VolName};
use std::io::{BufReader, Write};
use std::path::Path;

fn fetch_bound(seal: &MetaSeal, max: u64) -> u64 {
    if seal.sealed() {
        max_sealed_len(max)
    } else {
        max
    }
}

/// A small metadata file of volume dir `dir` (`path` relative to it),
/// opened; `None` if the destination has none.
pub fn small(
    conn: &mut AgentConn,
    seal: &MetaSeal,
    kind: MetaKind,
    session: Option<&SessionName>,
    path: &str,
    max: u64,
) -> Result<Option<Vec<u8>>> {
    let dir = seal.dir();
    let Some(stored) = fetch::small(conn, dir, path, fetch_bound(seal, max))? else {
        return Ok(None);
    };
    if !seal.sealed() {
        return Ok(Some(stored));
    }
    let what = format!("{path} of volume dir {dir}");
    seal.open_bytes(kind, session, &stored, max, &what)
        .map(Some)
}

/// The real name of the volume stored in `seal.dir()`, read from its opened
/// `volume.json`: it must be the name that dir is derived from.
pub fn real_name(seal: &MetaSeal, volume_json: &[u8]) -> Result<VolName> {
    let Some(keys) = seal.keys() else {
        return Ok(seal.dir().clone());
    };
    #[derive(serde::Deserialize)]
    struct Named {
        name: VolName,
    }
    let n: Named = serde_json::from_slice(volume_json).with_context(|| {
        format!(
            "volume dir {}: volume.json names no valid volume",
            seal.dir()
        )
    })?;
    if &keys.hidden_name(&n.name) != seal.dir() {
        bail!(
            "volume dir {} holds the volume.json of volume {}, whose dir is another: moved or replaced",
            seal.dir(),
            n.name
        );
    }
    Ok(n.name)
}

/// Fetch a session's manifest into `to` (plain), at most `max` plain bytes;
/// its length and sha256.
pub fn manifest(
    conn: &mut AgentConn,
    seal: &MetaSeal,
    session: &SessionName,
    path: &str,
    max: u64,
    to: &Path,
) -> Result<(u64, [u8; 32])> {
    let dir = seal.dir();
    if !seal.sealed() {
        return fetch::to_file(conn, dir, path, max, to);
    }
    let stored = to.with_extension("sealed");
    let _ = std::fs::remove_file(&stored);
    fetch::to_file(conn, dir, path, max_sealed_len(max), &stored)?;
    let input = std::fs::File::open(&stored)
        .with_context(|| format!("cannot open {}", stored.display()))?;
    let out = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut hashing = Hashing {
        h: sha2::Sha256::new(),
        out,
    };
    let what = format!("{path} of volume dir {dir}");
    let n = seal.open_to(
        MetaKind::Manifest,
        Some(session),
        BufReader::new(input),
        max,
        &mut hashing,
        &what,
    )?;
    std::fs::remove_file(&stored).with_context(|| format!("cannot remove {}", stored.display()))?;
    hashing
        .out
        .sync_all()
        .with_context(|| format!("cannot fsync {}", to.display()))?;
    Ok((n, hashing.h.finalize().into()))
}

struct Hashing {
    h: sha2::Sha256,
    out: std::fs::File,
}

impl Write for Hashing {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
