//! receive and verify: rebuild a volume as of one session from that session
//! and every older one (the newest entry per chunk wins), checking every
//! chunk against the local manifests before it is used.
//!
//! Per chunk, in this order: the stored file's length is bounded, its SHA-256
//! must equal the manifest's stored hash, it is decoded with its declared
//! length bounded by the chunk size, and the decoded bytes must match the
//! manifest's content hash, unless decoding has proven them: a file stored
//! raw is its content, and a zstd frame with zstd's content checksum has
//! just been checked against its output ([`ChunkCodec::decode_owned`];
//! docs/FORMAT.md §22.1, §22.3).
//! Only then is anything written.

use crate::chunk::{sha256, ChunkCodec, Decoded};
use crate::dest::client::{FileData, FileReply};
use crate::dest::AgentConn;
use crate::local_meta::SessionInfo;
use crate::manifest::{ChunkRef, Merged};
use crate::ops::context::Ctx;
use crate::progress::Progress;
use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use sparsebak_common::names::{chunk_rel_path, SessionName, VolName};
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex, ChunkSize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

/// Chunks verified together on all cores.
const BATCH: usize = 64;
/// verify stops collecting after this many bad chunks.
const MAX_REPORTED: usize = 1000;
/// Most zero chunks one [`Item::Zeros`] covers.
const MAX_ZERO_RUN: u64 = 1 << 16;

#[derive(Debug, Default)]
pub struct RestoreReport {
    pub session: Option<SessionName>,
    pub volsize: Bytes,
    pub chunks: u64,
    pub data_chunks: u64,
    pub zero_chunks: u64,
    pub stored_bytes: u64,
    /// Problems found (verify only; receive stops at the first).
    pub bad: Vec<String>,
    pub elapsed: Duration,
}

/// One chunk of the restored volume.
enum Item {
    Chunk {
        addr: ByteOffset,
        len: u64,
        chunk: ChunkRef,
        session: SessionName,
    },
    /// `count` consecutive zero chunks from `addr` to `end`: one item
    /// through the pipeline instead of one per chunk, so the long zero runs
    /// of a large sparse volume cost little (the sink still sees each chunk).
    Zeros {
        addr: ByteOffset,
        end: u64,
        count: u64,
    },
    /// The local metadata cannot describe this chunk.
    Broken(String),
}

/// Merge consecutive zero chunks of `it` into [`Item::Zeros`] runs of at
/// most [`MAX_ZERO_RUN`] chunks.
fn zero_runs(it: impl Iterator<Item = Item>) -> impl Iterator<Item = Item> {
    let mut it = it.peekable();
    std::iter::from_fn(move || {
        let first = it.next()?;
        let Item::Chunk {
            addr,
            len,
            chunk: ChunkRef::Zero,
            ..
        } = first
        else {
            return Some(first);
        };
        let (mut end, mut count) = (addr.0 + len, 1);
        while count < MAX_ZERO_RUN {
            match it.peek() {
                Some(Item::Chunk {
                    addr: a,
                    len: l,
                    chunk: ChunkRef::Zero,
                    ..
                }) if a.0 == end => {
                    (end, count) = (end + l, count + 1);
                    it.next();
                }
                _ => break,
            }
        }
        Some(Item::Zeros { addr, end, count })
    })
}

/// Pick the session: by name, or the newest. Returns the chain up to it.
pub fn select(chain: &[SessionInfo], vol: &VolName, want: Option<&SessionName>) -> Result<usize> {
    select_in(chain, |i| &i.name, vol, "the archive yet", want)
}

/// [`select`] over any chain (0.2's too): `name` gives a session's name,
/// `archive` ends the message for an empty chain.
pub(crate) fn select_in<T>(
    chain: &[T],
    name: impl Fn(&T) -> &SessionName,
    vol: &dyn std::fmt::Display,
    archive: &str,
    want: Option<&SessionName>,
) -> Result<usize> {
    if chain.is_empty() {
        bail!("volume {vol} has no sessions in {archive}");
    }
    match want {
        None => Ok(chain.len() - 1),
        Some(s) => chain.iter().position(|i| name(i) == s).ok_or_else(|| {
            anyhow!(
                "session {s} does not exist for volume {vol} (it has {} sessions, {} to {})",
                chain.len(),
                name(&chain[0]),
                name(&chain[chain.len() - 1])
            )
        }),
    }
}

/// The stored file of a reply, or why there is none. `what` names the chunk.
pub(crate) fn reply_file(reply: Option<FileReply>, what: &dyn Fn() -> String) -> Result<FileData> {
    match reply {
        Some(FileReply::Data(f)) => Ok(f),
        Some(FileReply::Missing) => bail!("{}: the chunk file is missing from the archive", what()),
        Some(FileReply::Refused(m)) => bail!("{}: the agent refused it: {m}", what()),
        None => bail!("{}: no reply", what()),
    }
}

/// The stored file's SHA-256 must be `want` before anything decodes it.
pub(crate) fn check_stored_hash(
    file: &[u8],
    want: &[u8; 32],
    what: &dyn Fn() -> String,
) -> Result<()> {
    if &sha256(file) != want {
        bail!(
            "{}: hash mismatch: the stored file is corrupted or truncated ({} bytes)",
            what(),
            file.len()
        );
    }
    Ok(())
}

/// Account for a batch of checked chunks `(length, stored bytes, outcome)`
/// in order: progress, stored bytes, and failures: receive stops at the
/// first, verify collects up to [`MAX_REPORTED`].
pub(crate) fn account(
    results: Vec<(u64, u64, Result<()>)>,
    progress: &dyn Progress,
    report: &mut RestoreReport,
    verify_only: bool,
) -> Result<()> {
    for (len, stored, res) in results {
        progress.advance(len);
        report.stored_bytes += stored;
        if let Err(e) = res {
            if !verify_only {
                return Err(e);
            }
            if report.bad.len() < MAX_REPORTED {
                report.bad.push(format!("{e:#}"));
            }
        }
    }
    Ok(())
}

/// The chunks of the volume at `chain[sel]`, in address order, with a
/// coverage check: every chunk from 0 to the end must be described.
fn items(
    ctx: &Ctx,
    vol: &VolName,
    chain: &[SessionInfo],
    sel: usize,
) -> Result<impl Iterator<Item = Item> + Send> {
    let info = &chain[sel];
    let cs = ctx.config.chunk_size;
    let links = chain[..=sel]
        .iter()
        .rev()
        .map(|s| (s.name.clone(), ctx.meta.manifest_path(vol, &s.name)))
        .collect();
    let mut merged = Merged::new(links, info.volsize.0)?;
    let size = info.volsize;
    let n = cs.count(size);
    let mut next = 0u64;
    let mut done = false;
    let vol = vol.clone();
    Ok(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let broken = |m: String| Some(Item::Broken(m));
        match merged.next() {
            Some(Ok(s)) => {
                let idx = cs.index_of(s.entry.addr);
                if cs.offset(idx) != s.entry.addr || idx.0 != next {
                    done = true;
                    return broken(format!(
                        "metadata of {vol} does not describe chunk {} (next entry is {} in {})",
                        cs.offset(ChunkIndex(next)),
                        s.entry.addr,
                        s.session
                    ));
                }
                next += 1;
                Some(Item::Chunk {
                    addr: s.entry.addr,
                    len: cs.len_in(idx, size),
                    chunk: s.entry.chunk,
                    session: s.session,
                })
            }
            Some(Err(e)) => {
                done = true;
                broken(format!("{e:#}"))
            }
            None => {
                done = true;
                (next < n).then(|| {
                    Item::Broken(format!(
                        "metadata of {vol} does not describe chunk {} or later",
                        cs.offset(ChunkIndex(next))
                    ))
                })
            }
        }
    }))
}

fn check_chunk(
    vol: &VolName,
    cs: ChunkSize,
    codec: &ChunkCodec,
    item: &Item,
    reply: Option<FileReply>,
) -> Result<Option<Decoded>> {
    let Item::Chunk {
        addr,
        len,
        chunk,
        session,
    } = item
    else {
        unreachable!("broken items are handled first")
    };
    let what = || format!("chunk {addr} of {vol} from {session}");
    let ChunkRef::Data { stored, content } = chunk else {
        return Ok(None);
    };
    let file = reply_file(reply, &what)?;
    if file.len() as u64 > cs.max_stored() {
        bail!(
            "{}: the stored file is {} bytes, over the limit of {}",
            what(),
            file.len(),
            cs.max_stored()
        );
    }
    if &codec.stored_digest(&file) != stored {
        bail!(
            "{}: hash mismatch: the stored file is corrupted or truncated ({} bytes)",
            what(),
            file.len()
        );
    }
    let data = codec
        .decode_owned(file.into_frame(), 1, *addr, *len as usize)
        .map_err(|e| anyhow!("{}: {e}", what()))?;
    if !data.proven && &codec.content_digest(data.bytes()) != content {
        bail!("{}: decoded content does not match its hash", what());
    }
    Ok(Some(data))
}

/// Where verified chunks go: a restore target, or a comparison.
pub trait Sink: Sync {
    fn data(&self, addr: ByteOffset, bytes: &[u8]) -> Result<()>;
    fn zero(&self, addr: ByteOffset, len: u64) -> Result<()>;
}

/// A batch of chunks with their replies, in address order.
type Batch = Vec<(Item, Option<FileReply>)>;

/// Check a batch on all cores and hand each good chunk to `out`: per chunk
/// `(length, stored bytes, outcome)`, in order.
fn check_batch(
    vol: &VolName,
    cs: ChunkSize,
    codec: &ChunkCodec,
    out: Option<&dyn Sink>,
    batch: Batch,
) -> Vec<(u64, u64, Result<()>)> {
    batch
        .into_par_iter()
        .map(|(item, reply)| {
            if let Item::Zeros { addr, end, .. } = item {
                return (end - addr.0, 0, zeros(out, cs, addr, end));
            }
            let Item::Chunk { addr, len, .. } = &item else {
                unreachable!()
            };
            let stored = match &reply {
                Some(FileReply::Data(f)) => f.len() as u64,
                _ => 0,
            };
            let res =
                check_chunk(vol, cs, codec, &item, reply).and_then(|data| match (out, data) {
                    (Some(o), Some(d)) => o.data(*addr, d.bytes()),
                    (Some(o), None) => o.zero(*addr, *len),
                    (None, _) => Ok(()),
                });
            (*len, stored, res)
        })
        .collect()
}

/// Hand the zero chunks from `addr` to `end` to `out`, one by one.
fn zeros(out: Option<&dyn Sink>, cs: ChunkSize, addr: ByteOffset, end: u64) -> Result<()> {
    let Some(o) = out else {
        return Ok(());
    };
    let mut a = addr.0;
    while a < end {
        let len = cs.bytes().min(end - a);
        o.zero(ByteOffset(a), len)?;
        a += len;
    }
    Ok(())
}

/// Read the replies for `requests` on this thread and pass them on in
/// batches of [`BATCH`]; counts chunks into `report`. Stops when `stop` is
/// set (the verifier failed) or the receiver is gone.
fn read_batches(
    conn: &mut AgentConn,
    vol: &VolName,
    requests: impl Iterator<Item = (Option<String>, Item)> + Send,
    report: &mut RestoreReport,
    tx: std::sync::mpsc::SyncSender<Batch>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut batch: Batch = Vec::with_capacity(BATCH);
    let stopped = || anyhow!("stopped: a chunk failed verification");
    conn.read_files(vol.clone().into(), requests, |item, reply| {
        if stop.load(Ordering::SeqCst) {
            return Err(stopped());
        }
        if let Item::Broken(m) = &item {
            bail!("{m}");
        }
        match &item {
            Item::Chunk { chunk, .. } => {
                report.chunks += 1;
                match chunk {
                    ChunkRef::Zero => report.zero_chunks += 1,
                    ChunkRef::Data { .. } => report.data_chunks += 1,
                }
            }
            Item::Zeros { count, .. } => {
                report.chunks += count;
                report.zero_chunks += count;
            }
            Item::Broken(_) => {}
        }
        batch.push((item, reply));
        if batch.len() >= BATCH {
            tx.send(std::mem::take(&mut batch)).map_err(|_| stopped())?;
        }
        Ok(())
    })
    .and_then(|()| tx.send(std::mem::take(&mut batch)).map_err(|_| stopped()))
}

/// Rebuild into `out` (receive, diff) or just check (`out == None`, verify)
/// the volume at a session.
pub fn restore(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    want: Option<&SessionName>,
    out: Option<&dyn Sink>,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let t0 = Instant::now();
    let chain = ctx.meta.chain(vol)?;
    let sel = select(&chain, vol, want)?;
    let info = &chain[sel];
    let cs = ctx.config.chunk_size;
    let codec = &ctx.codec_of(vol)?;
    let verify_only = out.is_none();
    let mut report = RestoreReport {
        session: Some(info.name.clone()),
        volsize: info.volsize,
        ..Default::default()
    };
    let requests = zero_runs(items(ctx, vol, &chain, sel)?).map(|it| {
        let path = match &it {
            Item::Chunk {
                addr,
                chunk: ChunkRef::Data { .. },
                session,
                ..
            } => Some(format!("{session}/{}", chunk_rel_path(*addr))),
            _ => None,
        };
        (path, it)
    });
    progress.start(
        if verify_only { "verify" } else { "receive" },
        info.volsize.0,
    );
    // Replies are read on this thread while a second thread verifies and
    // writes the previous batches, so the pipe keeps flowing during hashing.
    let (tx, rx) = sync_channel::<Batch>(4);
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let (read_res, verified) = std::thread::scope(|sc| {
        let verifier = sc.spawn(move || -> Result<(u64, Vec<String>)> {
            let mut part = RestoreReport::default();
            for b in rx.iter() {
                let results = check_batch(vol, cs, codec, out, b);
                if let Err(e) = account(results, progress, &mut part, verify_only) {
                    stop.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
            Ok((part.stored_bytes, part.bad))
        });
        let r = read_batches(conn, vol, requests, &mut report, tx, stop);
        (r, verifier.join().expect("verifier thread"))
    });
    // A verification failure explains a stopped read better than the read does.
    let (stored_bytes, bad) = verified?;
    read_res?;
    report.stored_bytes = stored_bytes;
    report.bad = bad;
    progress.finish();
    report.elapsed = t0.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(addr: u64, len: u64, zero: bool) -> Item {
        Item::Chunk {
            addr: ByteOffset(addr),
            len,
            chunk: if zero {
                ChunkRef::Zero
            } else {
                ChunkRef::Data {
                    stored: [1; 32],
                    content: [2; 32],
                }
            },
            session: SessionName::new("S_20260101-000000").unwrap(),
        }
    }

    /// (kind, addr, end or len, count) of each item.
    fn shape(items: Vec<Item>) -> Vec<(char, u64, u64, u64)> {
        items
            .into_iter()
            .map(|i| match i {
                Item::Chunk { addr, len, .. } => ('d', addr.0, len, 1),
                Item::Zeros { addr, end, count } => ('z', addr.0, end, count),
                Item::Broken(_) => ('b', 0, 0, 0),
            })
            .collect()
    }

    #[test]
    fn consecutive_zero_chunks_become_runs_and_data_stays_apart() {
        let c = 65536;
        let mut v = vec![chunk(0, c, true), chunk(c, c, true), chunk(2 * c, c, false)];
        v.push(chunk(3 * c, c, true));
        v.push(Item::Broken("gap".into()));
        v.push(chunk(5 * c, 100, true));
        assert_eq!(
            shape(zero_runs(v.into_iter()).collect()),
            vec![
                ('z', 0, 2 * c, 2),
                ('d', 2 * c, c, 1),
                ('z', 3 * c, 4 * c, 1),
                ('b', 0, 0, 0),
                ('z', 5 * c, 5 * c + 100, 1),
            ]
        );
        // A long run is cut every MAX_ZERO_RUN chunks, and each zero chunk
        // still reaches the sink with its own length.
        let n = MAX_ZERO_RUN + 3;
        let runs = shape(zero_runs((0..n).map(|i| chunk(i * c, c, true))).collect());
        assert_eq!(
            runs,
            vec![
                ('z', 0, MAX_ZERO_RUN * c, MAX_ZERO_RUN),
                ('z', MAX_ZERO_RUN * c, n * c, 3)
            ]
        );
        struct Calls(std::sync::Mutex<Vec<(u64, u64)>>);
        impl Sink for Calls {
            fn data(&self, _: ByteOffset, _: &[u8]) -> Result<()> {
                unreachable!()
            }
            fn zero(&self, a: ByteOffset, len: u64) -> Result<()> {
                self.0.lock().unwrap().push((a.0, len));
                Ok(())
            }
        }
        let calls = Calls(Default::default());
        let cs = ChunkSize::from_factor(1).unwrap();
        zeros(Some(&calls), cs, ByteOffset(c), 3 * c + 7).unwrap();
        assert_eq!(
            calls.0.into_inner().unwrap(),
            vec![(c, c), (2 * c, c), (3 * c, 7)]
        );
    }
}
