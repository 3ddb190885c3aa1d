//! `arch-check`: the whole archive against dom0's metadata (docs/FORMAT.md
//! §17.2). Per configured volume: the cheap check ([`super::compare`]), then
//! for every session dom0 has and the destination lists, its `info.json`
//! and its manifest read back through `ReadMeta` and hashed here (not
//! taken on the agent's word), and with `--data` every chunk file the
//! session stores ([`super::data`]). Volumes on the destination that dom0
//! does not know are reported too. Every problem is named by volume,
//! session and chunk; nothing is written.

use super::report::CheckReport;
use super::{compare, data, Kind, LocalVolume, Problem};
use crate::chunk::ChunkCodec;
use crate::config::Config;
use crate::crypto::sealed::{max_sealed_len, MetaKind};
use crate::crypto::ArchiveKeys;
use crate::dest::AgentConn;
use crate::local_meta::{Meta, SessionInfo};
use crate::metaseal::MetaSeal;
use crate::progress::Progress;
use anyhow::{bail, Result};
use sha2::Digest as _;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{ErrorKind, Request, Response, MAX_INFO_FILE};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;

/// Bytes per manifest line (`<64> <64> x<16>\n`).
const MANIFEST_LINE: u64 = 148;

/// Check every configured volume; `data` reads every stored chunk file.
pub fn check_archive(
    meta: &Meta,
    config: &Config,
    conn: &mut AgentConn,
    data: bool,
    pb: &dyn Progress,
) -> Result<CheckReport> {
    let mut r = CheckReport {
        data,
        ..Default::default()
    };
    // Format 2: volume dirs have hidden names, metadata files are sealed
    // and chunks are decoded with the archive's keys (docs/FORMAT.md §18).
    let keys = crate::keyring::load_local_keys(&meta.root)?;
    unknown_volumes(config, keys.as_deref(), conn, &mut r)?;
    for vol in config.volumes.keys() {
        check_volume(meta, config, keys.as_ref(), conn, vol, pb, &mut r)?;
    }
    r.archive_generation = super::state::archive_record(meta)?.map(|a| a.generation);
    Ok(r)
}

/// Volume directories on the destination that dom0's configuration does
/// not name: deleted by dom0 while the destination kept an older copy, or
/// left out by `arch-recover`.
fn unknown_volumes(
    config: &Config,
    keys: Option<&ArchiveKeys>,
    conn: &mut AgentConn,
    r: &mut CheckReport,
) -> Result<()> {
    let names = match conn.request(&Request::ListVolumes)? {
        Response::Volumes { names, .. } => names,
        other => bail!("unexpected answer to ListVolumes: {other:?}"),
    };
    let known: BTreeSet<VolName> = config
        .volumes
        .keys()
        .map(|v| keys.map(|k| k.hidden_name(v)).unwrap_or_else(|| v.clone()))
        .collect();
    for v in names.iter().filter(|v| !known.contains(*v)) {
        r.add(Problem::new(
            Kind::Stale,
            v,
            "on the destination but not in dom0's configuration (dom0 deleted it and the \
             destination presents an older state, or arch-recover left it out)",
        ));
    }
    Ok(())
}

fn check_volume(
    meta: &Meta,
    config: &Config,
    keys: Option<&Arc<ArchiveKeys>>,
    conn: &mut AgentConn,
    vol: &VolName,
    pb: &dyn Progress,
    r: &mut CheckReport,
) -> Result<()> {
    r.volumes += 1;
    let seal = MetaSeal::new(keys.cloned(), vol);
    let codec = match keys {
        None => ChunkCodec::plain(config.compression),
        Some(k) => {
            let uuid = meta.load_volume(vol)?.map(|s| s.uuid).unwrap_or_default();
            ChunkCodec::sealed(config.compression, k.clone(), &uuid)
        }
    };
    let chain = meta.chain(vol)?;
    let local = LocalVolume::load(meta, vol)?;
    let dest = conn.session_digests(vol)?;
    let cheap = compare(vol, &local, &dest);
    let flagged: BTreeSet<SessionName> = cheap.iter().filter_map(|p| p.session.clone()).collect();
    let listed: BTreeSet<&SessionName> = dest.sessions.iter().map(|d| &d.name).collect();
    if cheap.is_empty() {
        super::state::record(meta, &config.uuid, vol)?;
    }
    for p in cheap {
        r.add(p);
    }
    for (info, (_, digest)) in chain.iter().zip(&local.sessions) {
        if !listed.contains(&info.name) {
            continue; // reported missing
        }
        r.sessions += 1;
        if !flagged.contains(&info.name) {
            check_info(conn, vol, info, digest, r)?;
        }
        check_manifest(conn, &seal, vol, info, r)?;
        if r.data {
            data::check_session(meta, &codec, config.chunk_size, conn, vol, info, pb, r)?;
        }
    }
    Ok(())
}

/// What reading a metadata file back gave: its sha256, or a problem.
enum Read {
    Digest(String),
    Problem(Kind, String),
}

/// Read `path` of `vol` (at most `max` bytes) through `ReadMeta` and hash it.
fn read_digest(conn: &mut AgentConn, vol: &VolName, path: &str, max: u64) -> Result<Read> {
    let mut h = sha2::Sha256::new();
    read_pieces(conn, vol, path, max, &mut |b| h.update(b))?
        .map_or_else(|| Ok(Read::Digest(hex::encode(h.finalize()))), Ok)
}

/// Read `path` of `vol` (at most `max` bytes) through `ReadMeta` into
/// `sink`; `Some` problem if it cannot be read whole.
fn read_pieces(
    conn: &mut AgentConn,
    vol: &VolName,
    path: &str,
    max: u64,
    sink: &mut dyn FnMut(&[u8]),
) -> Result<Option<Read>> {
    let (mut offset, mut size) = (0u64, None);
    loop {
        let p = match conn.read_meta(vol, path, offset)? {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Some(Read::Problem(
                    Kind::Missing,
                    "is missing on the destination".into(),
                )))
            }
            Err(e) => {
                let why: String = e.message.chars().take(200).collect();
                return Ok(Some(Read::Problem(
                    Kind::Unreadable,
                    format!("cannot be read: {why}"),
                )));
            }
        };
        if p.size > max {
            let m = format!(
                "is {} bytes on the destination, more than the {max} it can be",
                p.size
            );
            return Ok(Some(Read::Problem(Kind::Altered, m)));
        }
        if size.is_some_and(|s| s != p.size) || (p.data.is_empty() && offset != p.size) {
            let m = "changed while it was read".to_string();
            return Ok(Some(Read::Problem(Kind::Unreadable, m)));
        }
        size = Some(p.size);
        sink(&p.data);
        offset += p.data.len() as u64;
        if offset == p.size {
            return Ok(None);
        }
    }
}

fn check_info(
    conn: &mut AgentConn,
    vol: &VolName,
    info: &SessionInfo,
    digest: &str,
    r: &mut CheckReport,
) -> Result<()> {
    let path = format!("{}/{SESSION_INFO_FILE}", info.name);
    let problem = match read_digest(conn, vol, &path, MAX_INFO_FILE)? {
        Read::Digest(d) if d == digest => return Ok(()),
        Read::Digest(_) => (
            Kind::Altered,
            "info.json read back from the destination differs from dom0's (though the agent \
             listed dom0's digest)"
                .to_string(),
        ),
        Read::Problem(k, m) => (k, format!("info.json {m}")),
    };
    r.add(Problem::new(problem.0, vol, problem.1).session(&info.name));
    Ok(())
}

/// Format 2: fetch the sealed manifest into a temporary file, open it
/// (authenticated to its volume and session) and hash the plaintext.
fn read_sealed_digest(
    conn: &mut AgentConn,
    seal: &MetaSeal,
    vol: &VolName,
    info: &SessionInfo,
    path: &str,
    max: u64,
) -> Result<Read> {
    let mut tmp = tempfile::tempfile()?;
    let mut failed = None;
    let got = read_pieces(conn, vol, path, max_sealed_len(max), &mut |b| {
        if let Err(e) = tmp.write_all(b) {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(anyhow::Error::new(e).context("cannot write a temporary file"));
    }
    if let Some(problem) = got {
        return Ok(problem);
    }
    use std::io::Seek as _;
    tmp.rewind()?;
    let mut h = HashWriter(sha2::Sha256::new());
    let input = std::io::BufReader::new(tmp);
    let what = format!("the manifest of {}", info.name);
    Ok(
        match seal.open_to(
            MetaKind::Manifest,
            Some(&info.name),
            input,
            max,
            &mut h,
            &what,
        ) {
            Ok(_) => Read::Digest(hex::encode(h.0.finalize())),
            Err(e) => Read::Problem(Kind::Altered, format!("does not open: {e:#}")),
        },
    )
}

struct HashWriter(sha2::Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn check_manifest(
    conn: &mut AgentConn,
    seal: &MetaSeal,
    vol: &VolName,
    info: &SessionInfo,
    r: &mut CheckReport,
) -> Result<()> {
    r.manifests += 1;
    let path = format!("{}/{MANIFEST_FILE}", info.name);
    let max = info.chunks.saturating_mul(MANIFEST_LINE);
    let read = if seal.sealed() {
        read_sealed_digest(conn, seal, vol, info, &path, max)?
    } else {
        read_digest(conn, vol, &path, max)?
    };
    let problem = match read {
        Read::Digest(d) if d == info.manifest_sha256 => return Ok(()),
        Read::Digest(d) => (
            Kind::Altered,
            format!(
                "manifest on the destination differs from dom0's (sha256 {}… instead of {}…)",
                &d[..12],
                info.manifest_sha256.get(..12).unwrap_or("")
            ),
        ),
        Read::Problem(k, m) => (k, format!("manifest {m}")),
    };
    r.add(Problem::new(problem.0, vol, problem.1).session(&info.name));
    Ok(())
}
