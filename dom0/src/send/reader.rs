//! The reader of a send: walks the volume in address order, pairs each
//! candidate chunk with its previous state from the merged manifests of
//! the chain, and hands batches of them to the workers. Chunks the source
//! says lie wholly in a hole are not read.
//!
//! A batch's chunks are read into one buffer, one `read_at` per run of
//! adjacent chunks (not one per chunk), at offsets aligned for `O_DIRECT`
//! (source/file.rs); the buffer comes back for the next batch once the
//! workers are done with the last chunk of this one, so no buffer is
//! zero-filled or faulted in per chunk.

use super::{ChunkData, Job, BATCH_BYTES};
use crate::manifest::{ChunkRef, Merged};
use crate::source::{HoleCursor, VolumeSource};
use anyhow::Result;
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex, ChunkSize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::Arc;

/// Alignment of every read's buffer, offset and length that `O_DIRECT`
/// needs (the largest logical block size in common use).
pub(crate) const ALIGN: usize = 4096;

/// One batch's chunk bytes; its buffer goes back to the reader when the
/// last chunk referring to it is done.
pub(crate) struct Span {
    buf: Vec<u8>,
    /// Where the aligned part of `buf` starts.
    base: usize,
    back: Sender<Vec<u8>>,
}

impl Span {
    /// The `len` bytes at `at`.
    pub(crate) fn get(&self, at: usize, len: usize) -> &[u8] {
        &self.buf[self.base + at..self.base + at + len]
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        // The reader may be gone already; then the buffer is just freed.
        let _ = self.back.send(std::mem::take(&mut self.buf));
    }
}

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
    let mut batch = Batch::new();
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
        let hole = is_hole(src, &mut holes, addr, len)?;
        if !hole {
            read.fetch_add(len, Ordering::Relaxed);
        }
        let compare = map.is_none() && prev_size.is_some() && !outside_old;
        batch.push(idx, addr, len, hole, prev_ref, compare);
        let full = batch.bytes >= per_batch || batch.pending.len() >= BATCH_MAX_JOBS;
        if full && tx.send(Ok(batch.read(src)?)).is_err() {
            return Ok(());
        }
    }
    if !batch.pending.is_empty() {
        let _ = tx.send(Ok(batch.read(src)?));
    }
    Ok(())
}

/// A chunk of the batch being gathered: a hole, or `len` bytes to read
/// into the batch's buffer at `at`.
struct Pending {
    idx: ChunkIndex,
    addr: ByteOffset,
    hole: Option<u64>,
    at: usize,
    len: usize,
    prev: Option<ChunkRef>,
    compare: bool,
}

/// The batch being gathered, and the buffers of batches the workers are done with.
struct Batch {
    pending: Vec<Pending>,
    /// Bytes to read (holes are not read).
    bytes: u64,
    back: Sender<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
}

impl Batch {
    fn new() -> Self {
        let (back, returned) = channel();
        Batch {
            pending: Vec::new(),
            bytes: 0,
            back,
            returned,
        }
    }

    fn push(
        &mut self,
        idx: ChunkIndex,
        addr: ByteOffset,
        len: u64,
        hole: bool,
        prev: Option<ChunkRef>,
        compare: bool,
    ) {
        let at = self.bytes as usize;
        if !hole {
            self.bytes += len;
        }
        self.pending.push(Pending {
            idx,
            addr,
            hole: hole.then_some(len),
            at,
            len: len as usize,
            prev,
            compare,
        });
    }

    /// Read the batch's chunks, one `read_at` per run of adjacent ones,
    /// and hand back its jobs; the batch starts afresh.
    fn read(&mut self, src: &dyn VolumeSource) -> Result<Vec<Job>> {
        let pending = std::mem::take(&mut self.pending);
        let bytes = std::mem::take(&mut self.bytes) as usize;
        let span = if bytes == 0 {
            None
        } else {
            let mut buf = self.returned.try_recv().unwrap_or_default();
            if buf.len() < bytes + ALIGN {
                buf.resize(bytes + ALIGN, 0);
            }
            let base = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
            read_runs(src, &pending, &mut buf[base..base + bytes])?;
            Some(Arc::new(Span {
                buf,
                base,
                back: self.back.clone(),
            }))
        };
        Ok(pending
            .into_iter()
            .map(|p| Job {
                idx: p.idx,
                data: match (p.hole, &span) {
                    (Some(len), _) => ChunkData::Hole(len),
                    (None, Some(span)) => ChunkData::Read {
                        span: span.clone(),
                        at: p.at,
                        len: p.len,
                    },
                    (None, None) => unreachable!("a batch with data has a buffer"),
                },
                prev: p.prev,
                compare: p.compare,
            })
            .collect())
    }
}

/// Fill `buf` with the data chunks of `pending` (packed in order), one read
/// per run of chunks adjacent in the volume.
fn read_runs(src: &dyn VolumeSource, pending: &[Pending], buf: &mut [u8]) -> Result<()> {
    let mut data = pending.iter().filter(|p| p.hole.is_none()).peekable();
    while let Some(first) = data.next() {
        let mut end = first.addr.0 + first.len as u64;
        while let Some(next) = data.next_if(|n| n.addr.0 == end) {
            end += next.len as u64;
        }
        let len = (end - first.addr.0) as usize;
        src.read_at(&mut buf[first.at..first.at + len], first.addr)
            .map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "cannot read chunk {} of {} (a read of {len} bytes from there)",
                    first.addr,
                    src.describe()
                ))
            })?;
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

/// Does the source know the chunk at `addr` lies wholly in a hole?
fn is_hole(
    src: &dyn VolumeSource,
    holes: &mut HoleCursor<'_>,
    addr: ByteOffset,
    len: u64,
) -> Result<bool> {
    holes.is_hole(addr, len).map_err(|e| {
        anyhow::Error::new(e).context(format!("cannot read chunk {addr} of {}", src.describe()))
    })
}
