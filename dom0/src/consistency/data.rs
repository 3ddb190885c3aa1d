//! `arch-check --data`: every chunk file a session stores (the data entries
//! of its own manifest, each file once), read through `ReadFiles` and
//! checked as a restore checks it (docs/FORMAT.md §8): length bound, stored
//! sha256 before decoding, bounded decode, content sha256. Each bad file is
//! a problem naming volume, session and chunk; the check goes on.

use super::report::CheckReport;
use super::{Kind, Problem};
use crate::chunk::ChunkCodec;
use crate::dest::client::FileReply;
use crate::dest::AgentConn;
use crate::local_meta::{Meta, SessionInfo};
use crate::manifest::{ChunkRef, Digest, ManifestReader};
use crate::progress::Progress;
use anyhow::{Context, Result};
use rayon::prelude::*;
use sparsebak_common::names::{chunk_rel_path, VolName};
use sparsebak_common::units::{ByteOffset, ChunkSize};
use std::sync::{Arc, Mutex};

/// Chunks checked together on all cores.
const BATCH: usize = 64;

/// One stored chunk to check: address, decoded length, the manifest's hashes.
struct Want {
    addr: ByteOffset,
    len: u64,
    stored: Digest,
    content: Digest,
}

/// What is wrong with a chunk file.
type Bad = (Kind, String);

/// What is wrong with one chunk file, if anything.
fn check_file(
    codec: &ChunkCodec,
    cs: ChunkSize,
    w: &Want,
    reply: Option<FileReply>,
) -> Option<Bad> {
    let file = match reply {
        Some(FileReply::Data(f)) => f,
        Some(FileReply::Missing) => {
            return Some((
                Kind::Missing,
                "the chunk file is missing on the destination".into(),
            ))
        }
        Some(FileReply::Refused(m)) => {
            let why: String = m.chars().take(200).collect();
            return Some((
                Kind::Unreadable,
                format!("the agent refused the chunk file: {why}"),
            ));
        }
        None => return Some((Kind::Unreadable, "no reply for the chunk file".into())),
    };
    if file.len() as u64 > cs.max_stored() {
        let m = format!(
            "the chunk file is {} bytes, more than the largest chunk file ({})",
            file.len(),
            cs.max_stored()
        );
        return Some((Kind::Altered, m));
    }
    if codec.stored_digest(&file) != w.stored {
        let m = format!(
            "the chunk file's sha256 is not the manifest's: corrupted or truncated ({} bytes)",
            file.len()
        );
        return Some((Kind::Altered, m));
    }
    match codec.decode(&file, w.addr, w.len as usize) {
        Err(e) => Some((
            Kind::Altered,
            format!("the chunk file does not decode: {e}"),
        )),
        Ok(d) if codec.content_digest(&d) != w.content => Some((
            Kind::Altered,
            "the decoded chunk does not match its content hash".into(),
        )),
        Ok(_) => None,
    }
}

/// Check a batch on all cores; count it and add its problems.
fn settle(
    codec: &ChunkCodec,
    cs: ChunkSize,
    vol: &VolName,
    info: &SessionInfo,
    batch: Vec<(Want, Option<FileReply>)>,
    pb: &dyn Progress,
    r: &mut CheckReport,
) {
    let results: Vec<(ByteOffset, u64, Option<Bad>)> = batch
        .into_par_iter()
        .map(|(w, reply)| {
            let bytes = match &reply {
                Some(FileReply::Data(f)) => f.len() as u64,
                _ => 0,
            };
            (w.addr, bytes, check_file(codec, cs, &w, reply))
        })
        .collect();
    for (addr, bytes, bad) in results {
        r.chunk_files += 1;
        r.chunk_bytes += bytes;
        pb.advance(bytes);
        if let Some((kind, m)) = bad {
            let p = Problem::new(kind, vol, m)
                .session(&info.name)
                .chunk(format!("x{:016x}", addr.0));
            r.add(p);
        }
    }
}

/// Check every chunk file of session `info` of `vol`.
#[allow(clippy::too_many_arguments)] // the check's context, passed down as is
pub fn check_session(
    meta: &Meta,
    codec: &ChunkCodec,
    cs: ChunkSize,
    conn: &mut AgentConn,
    vol: &VolName,
    info: &SessionInfo,
    pb: &dyn Progress,
    r: &mut CheckReport,
) -> Result<()> {
    let path = meta.manifest_path(vol, &info.name);
    let reader = ManifestReader::open(&path)?;
    // A damaged local manifest stops the check: dom0's metadata is the
    // authority, and without it nothing can be judged.
    let local_err: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let seen = local_err.clone();
    let session = info.name.clone();
    let volsize = info.volsize;
    let items = reader
        .map_while(move |e| match e {
            Ok(e) => Some(e),
            Err(err) => {
                *seen.lock().expect("not poisoned") = Some(err);
                None
            }
        })
        .filter_map(move |e| match e.chunk {
            ChunkRef::Zero => None,
            ChunkRef::Data { stored, content } => {
                let want = Want {
                    addr: e.addr,
                    len: cs.len_in(cs.index_of(e.addr), volsize),
                    stored,
                    content,
                };
                Some((Some(format!("{session}/{}", chunk_rel_path(e.addr))), want))
            }
        });
    pb.start("check", info.stored_bytes);
    let mut batch = Vec::with_capacity(BATCH);
    conn.read_files(vol.clone().into(), items, |want, reply| {
        batch.push((want, reply));
        if batch.len() == BATCH {
            settle(codec, cs, vol, info, std::mem::take(&mut batch), pb, r);
        }
        Ok(())
    })
    .with_context(|| format!("volume {vol}, session {}: reading chunk files", info.name))?;
    settle(codec, cs, vol, info, batch, pb, r);
    pb.finish();
    if let Some(e) = local_err.lock().expect("not poisoned").take() {
        return Err(e.context(format!("volume {vol}: dom0's manifest of {}", info.name)));
    }
    Ok(())
}
