//! send: read a volume, keep the chunks that changed, store them as a new
//! session.
//!
//! Pipeline (memory bounded by a few batches, whatever the volume size):
//!
//! ```text
//! reader thread ──batches──▶ rayon (zero check, hash, compress) ──▶ emitter thread
//!  pread + previous state                                          manifest + tar ▶ agent
//! ```
//!
//! Write order (docs/FORMAT.md): chunk files, manifest, info.json travel in
//! one tar stream into the destination's `S_…-tmp`; the agent commits
//! (syncfs, rename, fsync) only when told; then dom0 commits locally.

use crate::chunk::ChunkCodec;
use crate::dedup::run::LinkSource;
use crate::dest::client::Writer;
use crate::dest::AgentConn;
use crate::fsutil::{fsync_dir, write_atomic};
use crate::local_meta::{SessionInfo, VolumeState};
use crate::manifest::{ChunkRef, Entry, ManifestWriter, Merged};
use crate::metaseal::MetaSeal;
use crate::ops::context::Ctx;
use crate::progress::Progress;
use crate::source::VolumeSource;
use crate::timefmt::{iso8601, next_session_name, now_unix};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use sparsebak_common::names::{chunk_rel_path, SessionName, VolName, TMP_SUFFIX};
use sparsebak_common::proto::{FrameWriter, Request};
use sparsebak_common::tarmember::member_header;
use sparsebak_common::units::{ByteOffset, Bytes, ChunkIndex, ChunkSize};
use sparsebak_common::{SessionFormat, MANIFEST_FILE, SESSION_INFO_FILE};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

/// Bytes of volume data per batch handed to the workers.
const BATCH_BYTES: u64 = 4 << 20;

#[derive(Debug, Default, Clone)]
pub struct SendReport {
    pub session: Option<SessionName>,
    pub full: bool,
    pub volsize: Bytes,
    pub previous_size: Option<Bytes>,
    /// Bytes read from the source: holes, and chunks a change map rules
    /// out, are not read.
    pub read_bytes: u64,
    pub changed_chunks: u64,
    pub zero_chunks: u64,
    pub stored_chunks: u64,
    pub stored_bytes: u64,
    /// `--dedup`: chunk files stored as hard links (counted in
    /// `stored_chunks`/`stored_bytes` too) and the bytes they did not send.
    pub linked_chunks: u64,
    pub linked_bytes: u64,
    /// Bytes of chunk files that crossed the link (not kept, not linked).
    pub sent_bytes: u64,
    /// Resuming an interrupted session (docs/FORMAT.md §19): the session,
    /// and the chunk files the destination already held and kept (counted
    /// in `stored_chunks`/`stored_bytes` too).
    pub resumed_from: Option<SessionName>,
    pub resumed_chunks: u64,
    pub resumed_bytes: u64,
    pub elapsed: Duration,
}

struct Job {
    idx: ChunkIndex,
    data: ChunkData,
    /// Previous state of this chunk; `None` = unknown, so always emit.
    prev: Option<ChunkRef>,
    compare: bool,
}

/// A chunk's bytes (`len` bytes at `at` in its batch's buffer), or the
/// source's word that it lies wholly in a hole (zeros, not read): it
/// becomes a zero chunk exactly as read zeros would.
enum ChunkData {
    Read {
        span: std::sync::Arc<reader::Span>,
        at: usize,
        len: usize,
    },
    Hole(u64),
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Unchanged(u64),
    Zero(ByteOffset, u64),
    Data {
        addr: ByteOffset,
        len: u64,
        file: Vec<u8>,
        stored: [u8; 32],
        content: [u8; 32],
    },
}

/// Compared 16 bytes at a time (the compiler vectorises it), without unsafe.
fn is_zero(d: &[u8]) -> bool {
    let mut words = d.chunks_exact(16);
    words
        .by_ref()
        .all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

fn process(job: Job, codec: &ChunkCodec, cs: ChunkSize) -> Outcome {
    let addr = cs.offset(job.idx);
    let zero = |len| {
        if job.compare && job.prev == Some(ChunkRef::Zero) {
            return Outcome::Unchanged(len);
        }
        Outcome::Zero(addr, len)
    };
    let data = match job.data {
        ChunkData::Hole(len) => return zero(len),
        ChunkData::Read { ref span, at, len } => span.get(at, len),
    };
    if is_zero(data) {
        return zero(data.len() as u64);
    }
    let len = data.len() as u64;
    let content = codec.content_digest(data);
    if job.compare {
        if let Some(ChunkRef::Data { content: old, .. }) = job.prev {
            if old == content {
                return Outcome::Unchanged(len);
            }
        }
    }
    let file = codec.encode(data, addr);
    let stored = codec.stored_digest(&file);
    Outcome::Data {
        addr,
        len,
        file,
        stored,
        content,
    }
}

/// The emitter's state: local manifest, lazily started upload.
struct Emitter<'a> {
    conn: &'a mut AgentConn,
    vol: &'a VolName,
    session: &'a SessionName,
    volume_uuid: &'a str,
    /// `folders` or `tar` (docs/FORMAT.md §13).
    format: SessionFormat,
    expect_last: Option<&'a SessionName>,
    manifest: Option<ManifestWriter>,
    tar: Option<tar::Builder<FrameWriter<Writer>>>,
    report: SendReport,
    dedup: Option<&'a mut dyn LinkSource>,
    /// The local `-tmp` directory, where `resume.json` is kept.
    tmp: &'a Path,
    resume: resume::Resume,
    basis: resume::Basis<'a>,
    /// How the manifest, info and volume info are stored (format 2: sealed).
    seal: MetaSeal,
}

fn tar_header(name: &str, len: u64) -> tar::Header {
    member_header(name, len, tar::EntryType::Regular).expect("layout names fit ustar")
}

impl<'a> Emitter<'a> {
    fn upload(&mut self) -> Result<&mut tar::Builder<FrameWriter<Writer>>> {
        if self.tar.is_none() {
            if self.format == SessionFormat::Folders {
                // From here on the destination holds this session's -tmp.
                resume::save(self.tmp, &self.basis.state(self.session))?;
            }
            let fw = self.conn.start_upload(
                self.vol,
                self.session,
                self.expect_last,
                self.volume_uuid,
                self.format,
                self.resume.from.as_ref(),
            )?;
            self.tar = Some(tar::Builder::new(fw));
        }
        Ok(self.tar.as_mut().expect("just started"))
    }

    /// Resuming: keep chunk `name` if the destination holds it already;
    /// the stored hash of the file kept (its manifest entry's).
    fn try_keep(
        &mut self,
        name: &str,
        addr: ByteOffset,
        stored: &[u8; 32],
        content: &[u8; 32],
    ) -> Result<Option<[u8; 32]>> {
        let Some(kept) = self.resume.kept(addr, stored, content)? else {
            return Ok(None);
        };
        let res = resume::append_keep(self.upload()?, name, &kept);
        res.map_err(|e| self.fail(e))?;
        Ok(Some(kept))
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let h = tar_header(name, data.len() as u64);
        let res = self.upload()?.append(&h, data);
        res.map_err(|e| self.fail(e))
    }

    /// Stream a local file (the manifest may be large) into the upload.
    fn append_file(&mut self, name: &str, path: &Path) -> Result<()> {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = f
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        let h = tar_header(name, len);
        let res = self.upload()?.append(&h, f);
        res.map_err(|e| self.fail(e))
    }

    /// `--dedup`: store chunk `name` as a hard link if its bytes are
    /// already in the archive; `false` if they must be sent.
    fn try_link(&mut self, name: &str, addr: ByteOffset, stored: &[u8; 32]) -> Result<bool> {
        let Some(d) = self.dedup.as_mut() else {
            return Ok(false);
        };
        let Some(target) = d.link_for(self.vol, self.session, stored, addr)? else {
            return Ok(false);
        };
        let res = crate::dedup::wire::append_link(self.upload()?, name, &target, stored);
        res.map_err(|e| self.fail(e))?;
        Ok(true)
    }

    fn fail(&mut self, e: std::io::Error) -> anyhow::Error {
        self.tar = None;
        self.conn.upload_failed(e)
    }

    fn emit(&mut self, o: Outcome, progress: &dyn Progress) -> Result<()> {
        match o {
            Outcome::Unchanged(len) => progress.advance(len),
            Outcome::Zero(addr, len) => {
                self.manifest
                    .as_mut()
                    .expect("manifest open")
                    .push(&Entry {
                        addr,
                        chunk: ChunkRef::Zero,
                    })?;
                self.report.zero_chunks += 1;
                self.report.changed_chunks += 1;
                progress.advance(len);
            }
            Outcome::Data {
                addr,
                len,
                file,
                stored,
                content,
            } => {
                let name = chunk_rel_path(addr);
                crate::test_hooks::crash_at_count("send-chunk-", self.report.stored_chunks + 1);
                let mut stored = stored;
                if let Some(kept) = self.try_keep(&name, addr, &stored, &content)? {
                    stored = kept;
                    self.report.resumed_chunks += 1;
                    self.report.resumed_bytes += file.len() as u64;
                } else if self.try_link(&name, addr, &stored)? {
                    self.report.linked_chunks += 1;
                    self.report.linked_bytes += file.len() as u64;
                } else {
                    self.append(&name, &file)?;
                    self.report.sent_bytes += file.len() as u64;
                }
                self.manifest
                    .as_mut()
                    .expect("manifest open")
                    .push(&Entry {
                        addr,
                        chunk: ChunkRef::Data { stored, content },
                    })?;
                self.report.changed_chunks += 1;
                self.report.stored_chunks += 1;
                self.report.stored_bytes += file.len() as u64;
                progress.advance(len);
            }
        }
        Ok(())
    }
}

fn remove_stale_tmp(vdir: &Path) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(vdir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("cannot remove stale {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// The session's local `-tmp` directory, made afresh in the volume dir
/// `vdir`, and the resume state a stale one left (read before they go).
fn local_tmp(
    vdir: &Path,
    session: &SessionName,
    basis: &resume::Basis<'_>,
) -> Result<(PathBuf, Option<resume::ResumeState>)> {
    std::fs::create_dir_all(vdir).with_context(|| format!("cannot create {}", vdir.display()))?;
    let found = resume::find(vdir, basis);
    let stash = found.as_ref().and_then(|f| resume::stash_sent(f, vdir));
    remove_stale_tmp(vdir)?;
    let tmp = vdir.join(session.tmp_dir_name());
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Some(s) = stash {
        resume::unstash_sent(&s, &tmp)?;
    }
    Ok((tmp, found.map(|f| f.state)))
}

/// The volume's state, made and saved on its first send: saved before
/// anything is sent, so a first send that dies after the destination's
/// commit is recognised by its uuid next time.
fn volume_state(ctx: &Ctx, vol: &VolName) -> Result<VolumeState> {
    if let Some(s) = ctx.meta.load_volume(vol)? {
        return Ok(s);
    }
    let s = VolumeState {
        name: vol.clone(),
        uuid: uuid::Uuid::new_v4().to_string(),
        last: None,
    };
    ctx.meta.save_volume(&s)?;
    Ok(s)
}

/// Without a change map, each chunk is compared with its state in the
/// chain: the merge of the chain's manifests, newest first.
fn previous_manifests(
    ctx: &Ctx,
    vol: &VolName,
    chain: &[SessionInfo],
    src: &dyn VolumeSource,
) -> Result<Option<Merged>> {
    match (chain.last(), src.change_map()) {
        (Some(l), None) => {
            let links = chain
                .iter()
                .rev()
                .map(|s| (s.name.clone(), ctx.meta.manifest_path(vol, &s.name)))
                .collect();
            Ok(Some(Merged::new(links, l.volsize.0)?))
        }
        _ => Ok(None),
    }
}

/// Send one volume as a new session, in `format` (`folders` or `tar`,
/// docs/FORMAT.md §13), with `--dedup`'s link decisions when `dedup` is
/// given. Returns a report; `session` is `None` when nothing changed.
pub fn send_volume(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    src: &dyn VolumeSource,
    format: SessionFormat,
    progress: &dyn Progress,
    dedup: Option<&mut dyn LinkSource>,
) -> Result<SendReport> {
    let t0 = Instant::now();
    let cs = ctx.config.chunk_size;
    let chain = ctx.meta.chain(vol)?;
    let last = chain.last();
    let state = volume_state(ctx, vol)?;
    let codec = ctx.chunk_codec(&state.uuid)?;
    let session = next_session_name(now_unix(), last.map(|l| &l.name));
    let basis = resume::Basis {
        vol,
        cs,
        last: last.map(|l| &l.name),
        volume_uuid: &state.uuid,
    };
    let (tmp, found) = local_tmp(&ctx.meta.vol_dir(vol), &session, &basis)?;
    let resume = resume::Resume::start(conn, found, &tmp, format, src.size());
    // A refusal from here on means the agent dropped the session's -tmp.
    let refusals = conn.refusals();

    let result = (|| {
        let resume = resume?;
        let prev_size = last.map(|l| l.volsize);
        let prev = previous_manifests(ctx, vol, &chain, src)?;
        let mut em = Emitter {
            conn,
            vol,
            session: &session,
            volume_uuid: &state.uuid,
            format,
            expect_last: last.map(|l| &l.name),
            manifest: Some(ManifestWriter::create(&tmp.join(MANIFEST_FILE))?),
            tar: None,
            dedup: dedup.map(|d| &mut *d as &mut dyn LinkSource),
            resume,
            tmp: &tmp,
            basis,
            seal: ctx.meta_seal(vol)?,
            report: SendReport {
                full: last.is_none(),
                volsize: src.size(),
                previous_size: prev_size,
                ..Default::default()
            },
        };
        em.report.resumed_from = em.resume.from.clone();
        progress.start(
            if last.is_none() { "full send" } else { "send" },
            src.size().0,
        );
        let (tx, rx) = sync_channel::<Result<Vec<Job>>>(2);
        let (otx, orx) = sync_channel::<Receiver<Vec<Outcome>>>(2);
        let read = std::sync::atomic::AtomicU64::new(0);
        let mut em = std::thread::scope(|sc| -> Result<Emitter<'_>> {
            let read = &read;
            sc.spawn(move || read_batches(src, cs, prev, prev_size, tx, read));
            let emitter = sc.spawn(move || -> Result<Emitter<'_>> {
                for batch in orx.iter() {
                    let batch = batch.recv().context("a send worker failed")?;
                    for o in batch {
                        em.emit(o, progress)?;
                    }
                }
                Ok(em)
            });
            let r = compute(rx, otx, &codec, cs);
            let em = emitter.join().expect("emitter thread")?;
            r.map(|_| em)
        })?;
        progress.finish();
        em.report.read_bytes = read.into_inner();
        finish_session(ctx, em, &tmp, &state, last, cs, src.size())
    })();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            resume::after_failure(&tmp, conn.refusals() > refusals);
            return Err(e.context(format!(
                "send of volume {vol} failed; the previous sessions are intact"
            )));
        }
    };
    Ok(SendReport {
        elapsed: t0.elapsed(),
        ..report
    })
}

/// Hand each batch to the workers as soon as it is read, without waiting
/// for the one before (no barrier between batches: a worker done with its
/// share of one batch starts on the next); the emitter gets each batch's
/// outcomes in order, through the receivers queued on `otx`.
fn compute(
    rx: Receiver<Result<Vec<Job>>>,
    otx: SyncSender<Receiver<Vec<Outcome>>>,
    codec: &ChunkCodec,
    cs: ChunkSize,
) -> Result<()> {
    let codec = std::sync::Arc::new(codec.clone());
    for batch in rx.iter() {
        let batch = batch?;
        let (done, outcomes) = sync_channel(1);
        let codec = codec.clone();
        rayon::spawn(move || {
            let out: Vec<Outcome> = batch
                .into_par_iter()
                .map(|j| process(j, &codec, cs))
                .collect();
            let _ = done.send(out);
        });
        if otx.send(outcomes).is_err() {
            break; // the emitter failed; its error is reported
        }
    }
    Ok(())
}

fn finish_session(
    ctx: &Ctx,
    mut em: Emitter<'_>,
    tmp: &Path,
    state: &VolumeState,
    last: Option<&SessionInfo>,
    cs: ChunkSize,
    size: Bytes,
) -> Result<SendReport> {
    let vol = em.vol;
    let session = em.session.clone();
    let size_changed = last.is_some_and(|l| l.volsize != size);
    let manifest = em.manifest.take().expect("manifest open");
    if last.is_some() && manifest.lines == 0 && !size_changed {
        drop(em.tar.take());
        std::fs::remove_dir_all(tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
        return Ok(SendReport {
            session: None,
            ..em.report
        });
    }
    let lines = manifest.lines;
    let digest = manifest.finish()?;
    let info = SessionInfo {
        name: session.clone(),
        sequence: last.map(|l| l.sequence + 1).unwrap_or(0),
        previous: last.map(|l| l.name.clone()),
        volsize: size,
        chunk_size: cs,
        created_utc: iso8601(now_unix()),
        format: em.format.as_str().into(),
        chunks: lines,
        stored_chunks: em.report.stored_chunks,
        stored_bytes: em.report.stored_bytes,
        manifest_sha256: hex::encode(digest),
    };
    let info_json = serde_json::to_vec_pretty(&info)?;
    write_atomic(&tmp.join(SESSION_INFO_FILE), &info_json)?;
    let sealed = tmp.join(".manifest.sealed");
    let stored_manifest = em
        .seal
        .manifest(&session, &tmp.join(MANIFEST_FILE), &sealed)?;
    em.append_file(MANIFEST_FILE, &stored_manifest)?;
    let _ = std::fs::remove_file(&sealed);
    let stored_info = em.seal.info(&session, &info_json);
    em.append(SESSION_INFO_FILE, &stored_info)?;
    let tar = em.tar.take().expect("upload started");
    let fw = match tar.into_inner() {
        Ok(fw) => fw,
        Err(e) => return Err(em.conn.upload_failed(e)),
    };
    let (files, _bytes) = em.conn.finish_upload(fw)?;
    if files != em.report.stored_chunks + 2 {
        bail!(
            "the destination stored {files} files for {session} of {vol}, expected {}",
            em.report.stored_chunks + 2
        );
    }
    let new_state = VolumeState {
        last: Some(session.clone()),
        ..state.clone()
    };
    let volume_info = em.seal.volume(serde_json::to_string_pretty(&new_state)?);
    em.conn.ok(&Request::Commit {
        vol: vol.clone(),
        session: session.clone(),
        volume_info,
    })?;
    // The destination holds the session durably; now commit locally.
    resume::clear(tmp)?;
    fsync_dir(tmp)?;
    let fin = ctx.meta.session_dir(vol, &session);
    std::fs::rename(tmp, &fin).with_context(|| format!("cannot commit {}", fin.display()))?;
    fsync_dir(&ctx.meta.vol_dir(vol))?;
    ctx.meta.save_volume(&new_state)?;
    Ok(SendReport {
        session: Some(session),
        ..em.report
    })
}

mod reader;
mod resume;
use reader::read_batches;
pub use resume::abandon as abandon_resume;

#[cfg(test)]
mod tests;
