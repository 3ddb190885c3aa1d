//! receive and verify for 0.2 archives: the volume at one session is the
//! newest entry per chunk over that session and every older one, cut at the
//! *selected* session's volsize (0.2 used the newest session's size for
//! every session: fixed).
//!
//! Per data chunk, in this order: the file's length must be 1 to
//! `chunksize + chunksize/1024` bytes; its SHA-256 must equal the manifest
//! hash; only then is it decompressed (zlib or gzip, bounded to the chunk
//! size), and the decoded length must be exact (see [`expected`]). `0`
//! entries are never requested: they are holes or zeros.

use super::chunk::{decode, max_stored};
use super::manifest::{LegacyMerged, LegacyRef};
use super::meta::LegacySession;
use super::LegacyArchive;
use crate::dest::client::FileReply;
use crate::dest::AgentConn;
use crate::progress::Progress;
use crate::restore::{account, check_stored_hash, reply_file, select_in, RestoreReport, Sink};
use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::{chunk_rel_path, SessionName};
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex, ChunkSize};
use std::time::Instant;

const BATCH: usize = 64;

/// Pick a session by name, or the newest.
pub fn select(
    chain: &[LegacySession],
    vol: &LegacyVolName,
    want: Option<&SessionName>,
) -> Result<usize> {
    select_in(chain, |s| &s.name, vol, "the sparsebak 0.2 archive", want)
}

struct Chunk {
    addr: ByteOffset,
    /// Bytes of the restored volume this chunk covers.
    want: u64,
    /// Its length in the session whose manifest holds the entry.
    rec: u64,
    /// The restored volume's last chunk.
    last: bool,
    hash: Option<[u8; 32]>,
    session: SessionName,
}

enum Item {
    Chunk(Chunk),
    Broken(String),
}

/// Is a decoded length right for this chunk? Exactly `want`; or the length
/// the chunk had when its session recorded it, which differs from `want`
/// only across a size change: a volume that grew past a short last chunk
/// (0.2 did not resend it; the rest reads as zeros), or the last chunk of a
/// shrunk volume, recorded longer by an older or merged session (cut off).
fn expected(c: &Chunk, cs: ChunkSize, got: u64) -> bool {
    got == c.want
        || (got == c.rec && c.rec < c.want)
        || (c.last && got > c.want && got <= cs.bytes())
}

fn chunk_name(addr: ByteOffset) -> String {
    format!("x{:016x}", addr.0)
}

fn items(
    arch: &LegacyArchive,
    vol: &LegacyVolName,
    chain: &[LegacySession],
    sel: usize,
    cs: ChunkSize,
) -> Result<impl Iterator<Item = Item> + Send> {
    let size = chain[sel].volsize;
    let newest_first: Vec<&LegacySession> = chain[..=sel].iter().rev().collect();
    if let Some(t) = newest_first.iter().find(|s| s.format == "tar") {
        bail!(
            "session {} of {vol} was stored with 0.2's experimental --tarfile mode, which sparsebak 0.2 could not restore either",
            t.name
        );
    }
    let sizes: Vec<Bytes> = newest_first.iter().map(|s| s.volsize).collect();
    let links = newest_first
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                arch.vol_dir(vol).join(s.name.as_str()).join("manifest"),
            )
        })
        .collect();
    let mut merged = LegacyMerged::new(links, cs, size.0)?;
    let n = cs.count(size);
    let (mut next, mut done) = (0u64, false);
    let vol = vol.clone();
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        match merged.next() {
            Some(Ok(s)) => {
                let idx = cs.index_of(s.entry.addr);
                if idx.0 != next {
                    done = true;
                    return Some(Item::Broken(format!(
                        "metadata of {vol} does not describe chunk {} (next entry is {} in {})",
                        chunk_name(cs.offset(ChunkIndex(next))),
                        chunk_name(s.entry.addr),
                        s.session
                    )));
                }
                next += 1;
                Some(Item::Chunk(Chunk {
                    addr: s.entry.addr,
                    want: cs.len_in(idx, size),
                    rec: cs.len_in(idx, sizes[s.source]),
                    last: next == n,
                    hash: match s.entry.chunk {
                        LegacyRef::Zero => None,
                        LegacyRef::Data(h) => Some(h),
                    },
                    session: s.session,
                }))
            }
            Some(Err(e)) => {
                done = true;
                Some(Item::Broken(format!("volume {vol}: {e:#}")))
            }
            None => {
                done = true;
                (next < n).then(|| {
                    Item::Broken(format!(
                        "metadata of {vol} does not describe chunk {} or later (the volume has {} bytes)",
                        chunk_name(cs.offset(ChunkIndex(next))),
                        size.0
                    ))
                })
            }
        }
    }))
}

/// Check one data chunk; the bytes to write (exactly `want` long).
fn check(
    vol: &LegacyVolName,
    cs: ChunkSize,
    c: &Chunk,
    hash: &[u8; 32],
    reply: Option<FileReply>,
) -> Result<Vec<u8>> {
    let what = || format!("chunk {} of {vol} from {}", chunk_name(c.addr), c.session);
    let file = reply_file(reply, &what)?;
    let max = max_stored(cs.bytes());
    if file.is_empty() || file.len() as u64 > max {
        bail!(
            "{}: the stored file is {} bytes, outside 1..={max}",
            what(),
            file.len()
        );
    }
    check_stored_hash(&file, hash, &what)?;
    let mut data = decode(&file, cs.bytes()).map_err(|e| anyhow!("{}: {e}", what()))?;
    if !expected(c, cs, data.len() as u64) {
        bail!(
            "{}: decompresses to {} bytes, expected {}",
            what(),
            data.len(),
            c.want
        );
    }
    data.resize(c.want as usize, 0);
    Ok(data)
}

/// Rebuild into `out` (receive) or only check (verify, `out == None`) the
/// volume at `chain[sel]`.
pub fn restore(
    arch: &LegacyArchive,
    conn: &mut AgentConn,
    vol: &LegacyVolName,
    chain: &[LegacySession],
    sel: usize,
    out: Option<&dyn Sink>,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let info = &chain[sel];
    let cs = arch.chain_chunk_size(vol, &chain[..=sel])?;
    let verify_only = out.is_none();
    let mut report = RestoreReport {
        session: Some(info.name.clone()),
        volsize: info.volsize,
        ..Default::default()
    };
    let requests = items(arch, vol, chain, sel, cs)?.map(|it| {
        let path = match &it {
            Item::Chunk(c) if c.hash.is_some() => {
                Some(format!("{}/{}", c.session, chunk_rel_path(c.addr)))
            }
            _ => None,
        };
        (path, it)
    });
    progress.start(
        if verify_only { "verify" } else { "receive" },
        info.volsize.0,
    );
    let flush =
        |batch: &mut Vec<(Chunk, Option<FileReply>)>, report: &mut RestoreReport| -> Result<()> {
            let results: Vec<(u64, u64, Result<()>)> = std::mem::take(batch)
                .into_par_iter()
                .map(|(c, reply)| {
                    let stored = match &reply {
                        Some(FileReply::Data(f)) => f.len() as u64,
                        _ => 0,
                    };
                    let res = match (c.hash, out) {
                        (None, Some(o)) => o.zero(c.addr, c.want),
                        (None, None) => Ok(()),
                        (Some(h), o) => check(vol, cs, &c, &h, reply).and_then(|d| match o {
                            Some(o) => o.data(c.addr, &d),
                            None => Ok(()),
                        }),
                    };
                    (c.want, stored, res)
                })
                .collect();
            account(results, progress, report, verify_only)
        };
    let mut batch = Vec::with_capacity(BATCH);
    conn.read_files(vol.clone(), requests, |item, reply| {
        let c = match item {
            Item::Broken(m) => bail!("{m}"),
            Item::Chunk(c) => c,
        };
        report.chunks += 1;
        match c.hash {
            None => report.zero_chunks += 1,
            Some(_) => report.data_chunks += 1,
        }
        batch.push((c, reply));
        if batch.len() >= BATCH {
            flush(&mut batch, &mut report)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut report)?;
    progress.finish();
    report.elapsed = t0.elapsed();
    Ok(report)
}
