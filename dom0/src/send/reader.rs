//! The reader of a send: walks the volume in address order, pairs each
//! candidate chunk with its previous state from the merged manifests of
//! the chain, and hands batches of them to the workers. Chunks the source
//! says lie wholly in a hole are not read.

use super::{ChunkData, Job, BATCH_BYTES};
use crate::manifest::{ChunkRef, Merged};
use crate::source::{HoleCursor, VolumeSource};
use anyhow::Result;
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex, ChunkSize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

/// Produce batches of chunks to look at, with their previous state;
/// `read` counts the bytes read from the source (holes and chunks the
/// change map rules out are not read, and not counted).
pub(super) fn read_batches(
    src: &dyn VolumeSource,
    cs: ChunkSize,
    prev: Option<Merged>,
    prev_size: Option<Bytes>,
    tx: SyncSender<Result<Vec<Job>>>,
    read: &AtomicU64,
) {
    if let Err(e) = walk(src, cs, prev, prev_size, &tx, read) {
        let _ = tx.send(Err(e));
    }
}

/// Chunks without data cost no memory, so a batch may hold this many of
/// them (a sparse image's holes go through in few batches).
const BATCH_MAX_JOBS: usize = 16384;

/// The reader's loop; returns early, without error, when the workers are
/// gone (their side reports why).
fn walk(
    src: &dyn VolumeSource,
    cs: ChunkSize,
    prev: Option<Merged>,
    prev_size: Option<Bytes>,
    tx: &SyncSender<Result<Vec<Job>>>,
    read: &AtomicU64,
) -> Result<()> {
    let size = src.size();
    let per_batch = BATCH_BYTES.max(cs.bytes());
    let map = src.change_map();
    let mut prev = prev.map(|m| m.peekable());
    let mut holes = HoleCursor::new(src);
    let (mut batch, mut batch_bytes) = (Vec::new(), 0);
    for i in 0..cs.count(size) {
        let idx = ChunkIndex(i);
        let len = cs.len_in(idx, size);
        let addr = cs.offset(idx);
        let outside_old = prev_size.is_none_or(|p| addr.0 + len > p.0 || cs.len_in(idx, p) != len);
        // With a change map, only flagged chunks and chunks outside the old
        // extent are candidates; without one, every chunk is compared.
        if let Some(m) = map {
            if !outside_old && !m.may_differ(idx) {
                continue;
            }
        }
        let prev_ref = match prev.as_mut() {
            Some(it) => previous_state(it, addr)?,
            None => None,
        };
        let data = read_chunk(src, &mut holes, addr, len)?;
        if let ChunkData::Read(_) = data {
            batch_bytes += len;
            read.fetch_add(len, Ordering::Relaxed);
        }
        let compare = map.is_none() && prev_size.is_some() && !outside_old;
        batch.push(Job {
            idx,
            data,
            prev: prev_ref,
            compare,
        });
        if batch_bytes >= per_batch || batch.len() >= BATCH_MAX_JOBS {
            batch_bytes = 0;
            if tx.send(Ok(std::mem::take(&mut batch))).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch));
    }
    Ok(())
}

/// The previous sessions' state of the chunk at `addr`, from the merge of
/// their manifests (ascending, like the walk).
fn previous_state(
    it: &mut std::iter::Peekable<Merged>,
    addr: ByteOffset,
) -> Result<Option<ChunkRef>> {
    loop {
        match it.peek() {
            Some(Ok(s)) if s.entry.addr < addr => {
                it.next();
            }
            Some(Ok(s)) if s.entry.addr == addr => {
                let found = s.entry.chunk;
                it.next();
                return Ok(Some(found));
            }
            Some(Err(_)) => {
                let e = it.next().expect("peeked").expect_err("peeked an error");
                return Err(e.context("reading the previous session's manifests"));
            }
            _ => return Ok(None),
        }
    }
}

/// Read one chunk, unless the source knows it lies wholly in a hole.
fn read_chunk(
    src: &dyn VolumeSource,
    holes: &mut HoleCursor<'_>,
    addr: ByteOffset,
    len: u64,
) -> Result<ChunkData> {
    let failed = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!("cannot read chunk {addr} of {}", src.describe()))
    };
    if holes.is_hole(addr, len).map_err(failed)? {
        return Ok(ChunkData::Hole(len));
    }
    let mut data = vec![0u8; len as usize];
    src.read_at(&mut data, addr).map_err(failed)?;
    Ok(ChunkData::Read(data))
}
