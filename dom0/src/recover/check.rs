//! Strict checks of the metadata files `arch-recover` takes from the
//! destination, which is untrusted (docs/FORMAT.md §9, §15): every field is
//! bounded, every name validated, unknown fields refused, and a chain must be
//! one that sends and prunes could have produced.

use crate::local_meta::{SessionInfo, VolumeState};
use crate::manifest::ManifestReader;
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::ChunkSize;
use sparsebak_common::{FORMAT_FOLDERS, FORMAT_TAR};
use std::path::Path;

/// Largest `volume.json` or `info.json` accepted from the destination.
pub const MAX_SMALL_FILE: u64 = 64 * 1024;
/// Largest volume size accepted (1 PiB): keeps every derived count small.
pub const MAX_VOLSIZE: u64 = 1 << 50;
/// Bytes of a manifest data line, with its newline (docs/FORMAT.md §5); a
/// zero line is shorter.
pub const MANIFEST_LINE: u64 = 148;
/// Most committed sessions of one volume accepted.
pub const MAX_SESSIONS: usize = 100_000;

const VOLUME_KEYS: &[&str] = &["name", "uuid", "last"];
const INFO_KEYS: &[&str] = &[
    "name",
    "sequence",
    "previous",
    "volsize",
    "chunk_size",
    "created_utc",
    "format",
    "chunks",
    "stored_chunks",
    "stored_bytes",
    "manifest_sha256",
];

/// Parse a JSON object holding only `keys` (all of them) into `T`.
fn strict<T: DeserializeOwned>(bytes: &[u8], keys: &[&str]) -> Result<T> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("not valid JSON")?;
    let Some(obj) = v.as_object() else {
        bail!("not a JSON object");
    };
    for k in obj.keys() {
        if !keys.contains(&k.as_str()) {
            bail!("unknown field {:?}", k.chars().take(64).collect::<String>());
        }
    }
    for k in keys {
        if !obj.contains_key(*k) {
            bail!("field {k:?} is missing");
        }
    }
    serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The names `ListSessions` returned: valid, ascending, unique, bounded.
pub fn session_list(vol: &VolName, listed: &[SessionName]) -> Result<Vec<SessionName>> {
    if listed.len() > MAX_SESSIONS {
        bail!(
            "volume {vol}: the destination lists {} sessions, more than {MAX_SESSIONS}",
            listed.len()
        );
    }
    let mut out: Vec<SessionName> = Vec::with_capacity(listed.len());
    // Each name was validated as the reply was decoded.
    for name in listed.iter().cloned() {
        if out.last().is_some_and(|l| *l >= name) {
            bail!("volume {vol}: the destination lists session {name} out of order or twice");
        }
        out.push(name);
    }
    Ok(out)
}

/// `volume.json`: names this volume, has a uuid, and its `last` is the
/// newest committed session.
pub fn volume_state(
    vol: &VolName,
    bytes: &[u8],
    newest: Option<&SessionName>,
) -> Result<VolumeState> {
    let v: VolumeState =
        strict(bytes, VOLUME_KEYS).with_context(|| format!("volume {vol}: volume.json"))?;
    if &v.name != vol {
        bail!("volume {vol}: volume.json names volume {}", v.name);
    }
    if uuid::Uuid::parse_str(&v.uuid).is_err() || v.uuid.len() != 36 {
        bail!("volume {vol}: volume.json: uuid is not a UUID");
    }
    if v.last.as_ref() != newest {
        bail!(
            "volume {vol}: volume.json names {} as the last session, but the newest committed session is {}",
            v.last.as_ref().map_or("none", |s| s.as_str()),
            newest.map_or("none", |s| s.as_str())
        );
    }
    Ok(v)
}

fn created_ok(s: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SSZ, as timefmt::iso8601 writes it.
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `info.json` of session `name`, the one after `prev` in the chain.
pub fn session_info(
    vol: &VolName,
    name: &SessionName,
    bytes: &[u8],
    prev: Option<&SessionInfo>,
    cs: ChunkSize,
) -> Result<SessionInfo> {
    let at = || format!("volume {vol}, session {name}: info.json");
    let i: SessionInfo = strict(bytes, INFO_KEYS).with_context(at)?;
    let fail = |why: String| -> Result<SessionInfo> { Err(anyhow::anyhow!("{}: {why}", at())) };
    if &i.name != name {
        return fail(format!("names session {}", i.name));
    }
    if i.previous.as_ref() != prev.map(|p| &p.name) {
        return fail(format!(
            "previous is {}, but the session before it is {}",
            i.previous.as_ref().map_or("none", |s| s.as_str()),
            prev.map_or("none", |p| p.name.as_str())
        ));
    }
    if let Some(p) = prev.filter(|p| i.sequence <= p.sequence) {
        return fail(format!(
            "sequence {} does not follow {} of {}",
            i.sequence, p.sequence, p.name
        ));
    }
    if i.chunk_size != cs {
        return fail(format!(
            "chunk size {} is not the archive's {}",
            i.chunk_size.bytes(),
            cs.bytes()
        ));
    }
    if i.volsize.0 > MAX_VOLSIZE {
        return fail(format!("volume size {} is over {MAX_VOLSIZE}", i.volsize.0));
    }
    let all = cs.count(i.volsize);
    if i.chunks > all {
        return fail(format!(
            "{} chunks recorded, but the volume has only {all}",
            i.chunks
        ));
    }
    if prev.is_none() && i.chunks != all {
        return fail(format!(
            "the oldest session must record all {all} chunks, not {}",
            i.chunks
        ));
    }
    if i.stored_chunks > i.chunks
        || i.stored_bytes > i.stored_chunks.saturating_mul(cs.max_stored())
    {
        return fail(format!(
            "{} stored chunks of {} bytes do not fit {} recorded chunks",
            i.stored_chunks, i.stored_bytes, i.chunks
        ));
    }
    if i.format != FORMAT_FOLDERS && i.format != FORMAT_TAR {
        return fail("format is neither folders nor tar".into());
    }
    if !created_ok(&i.created_utc) {
        return fail("created_utc is not YYYY-MM-DDTHH:MM:SSZ".into());
    }
    let hex = i.manifest_sha256.as_bytes();
    if hex.len() != 64
        || !hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return fail("manifest_sha256 is not 64 lowercase hex digits".into());
    }
    Ok(i)
}

/// Most bytes the manifest of `info` can have.
pub fn manifest_bound(info: &SessionInfo) -> u64 {
    info.chunks * MANIFEST_LINE
}

/// A downloaded manifest (its sha256 already checked) parses, has exactly
/// `info.chunks` lines, and every address is chunk-aligned inside the volume.
pub fn manifest(vol: &VolName, info: &SessionInfo, path: &Path) -> Result<()> {
    let at = || format!("volume {vol}, session {}: manifest", info.name);
    let cs = info.chunk_size;
    let mut lines = 0u64;
    for e in ManifestReader::open(path).with_context(at)? {
        let e = e.with_context(at)?;
        lines += 1;
        if e.addr.0 % cs.bytes() != 0 || e.addr.0 >= info.volsize.0 {
            bail!(
                "{}: address {} is not a chunk of a {}-byte volume",
                at(),
                e.addr,
                info.volsize.0
            );
        }
    }
    if lines != info.chunks {
        bail!(
            "{}: {lines} lines, but info.json records {} chunks",
            at(),
            info.chunks
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
