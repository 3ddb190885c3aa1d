//! dom0's side of the agent protocol (see `sparsebak_common::proto`).
//!
//! Nothing the agent sends is trusted: frames are bounded before allocation,
//! replies are checked against what was asked, and chunk data is verified
//! by the caller against local manifests before use.
//!
//! The agent's refusals are typed ([`DestError`]: kind, message, and the
//! damaged chunk file where there is one). Calls whose callers act on a
//! refusal ([`AgentConn::delete_volume`], [`AgentConn::read_meta`]) return it
//! as an [`Answer`], so nobody downcasts or reads a message to decide.

use super::link::Link;
use super::transport::Via;
use anyhow::{anyhow, bail, Result};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{
    read_frame, recv_msg, send_msg, write_frame, ErrorKind, FrameWriter, Request, Response,
    SessionDigest, FEATURE_READ_META, FEATURE_SESSION_DIGESTS, FILE_DATA, FILE_MISSING,
    FILE_REFUSED, MAX_FRAME, META_PIECE, PROTOCOL_VERSION,
};
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::mpsc::TrySendError;
use std::time::Duration;

type Reader = BufReader<Box<dyn Read + Send>>;
/// The buffered pipe towards the agent.
pub type Writer = BufWriter<Box<dyn Write + Send>>;

/// An error the agent reported, with its kind.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DestError {
    pub kind: ErrorKind,
    pub message: String,
    /// The chunk file the agent found damaged (a `send --dedup` link target).
    pub damaged: Option<ChunkLoc>,
}

impl DestError {
    /// The agent's error reply, if `r` is one.
    fn from_reply(r: Response) -> std::result::Result<Response, DestError> {
        match r {
            Response::Error {
                kind,
                message,
                damaged,
            } => Err(DestError {
                kind,
                message,
                damaged,
            }),
            r => Ok(r),
        }
    }
}

/// What the agent answered: the reply, or its refusal. The outer `Result`
/// of a call that returns one is the link's failure or a malformed reply.
pub type Answer<T> = std::result::Result<T, DestError>;

/// How long a transport gets to exit by itself once its pipe failed or we
/// said goodbye, before it is killed.
const LOST_GRACE: Duration = Duration::from_secs(10);
const CLOSE_GRACE: Duration = Duration::from_secs(120);
/// How long an agent that broke off a stream gets to finish its message.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub struct AgentConn {
    /// The process carrying the pipe, and who it is (for error messages).
    link: Option<(Link, Via)>,
    r: Reader,
    /// `None` while an upload stream owns it, or once the link is lost.
    w: Option<Writer>,
    what: String,
    /// Hello was answered: failures from now on are a lost link.
    connected: bool,
    /// The agent's version and optional requests, from its Hello.
    agent_version: String,
    features: Vec<String>,
    /// The last refusal that named a damaged chunk file (see
    /// [`AgentConn::take_damaged`]).
    damaged: Option<DestError>,
    /// How many refusals the agent answered so far.
    refusals: u64,
    /// Format 2: the archive's keys; volume names in requests are hidden
    /// with them ([`super::hidden`]).
    hide: Option<std::sync::Arc<crate::crypto::ArchiveKeys>>,
    /// How long a dropped connection waits for the agent to end by itself
    /// after closing its input (an object store's agent then releases its
    /// lease, docs/FORMAT.md §21.4), before killing it.
    linger: std::time::Duration,
}

/// A volume as the destination presents it (`SessionDigests`).
#[derive(Debug, Default)]
pub struct DestSessions {
    /// Committed sessions, strictly ascending.
    pub sessions: Vec<SessionDigest>,
    /// The sha256 of `volume.json`; `None` if it is missing or unreadable.
    pub volume_sha256: Option<String>,
}

/// Most sessions of one volume dom0 accepts from a listing (as arch-recover).
const MAX_SESSIONS: usize = 100_000;

/// One `ReadMeta` answer: the file's size and the bytes from the offset asked.
#[derive(Debug)]
pub struct MetaPiece {
    pub size: u64,
    pub data: Vec<u8>,
}

/// What the destination answered to `Open`.
#[derive(Debug, Clone)]
pub struct Opened {
    pub header: Option<String>,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// One file asked for in a `ReadFiles` stream.
pub enum FileReply {
    Data(FileData),
    Missing,
    Refused(String),
}

/// A file's bytes as the agent sent them: the reply frame itself, its tag
/// byte skipped, so a chunk is not copied once more on its way to the check.
pub struct FileData(Vec<u8>);

impl FileData {
    /// The reply frame, status byte first: the file is `[1..]`. Lets a
    /// reader open a sealed chunk in place instead of copying it.
    pub fn into_frame(self) -> Vec<u8> {
        self.0
    }
}

impl std::ops::Deref for FileData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[1..]
    }
}

/// Most items in flight in one `read_files` stream. Small enough that the
/// requests sent ahead fit in the pipe or socket buffers between here and
/// the agent: real qrexec keeps a service's stdout open while requests for
/// it still wait in its own buffer, so an agent whose dom0 died could
/// otherwise block writing a reply nobody reads (the agent also gives up
/// after a stall limit; vm-agent/src/stall.rs). 256 requests of ~50 bytes
/// are ~13 KiB, still ahead of the agent's read-ahead window (64 files).
pub const READ_WINDOW: usize = 256;

/// Why a `read_files` stream stopped.
enum StreamFault {
    /// The pipe failed: explain it with the transport's fate.
    Pipe(String),
    /// The agent sent nonsense, or the caller gave up.
    Other(anyhow::Error),
}

fn read_reply(r: &mut Reader) -> std::result::Result<FileReply, StreamFault> {
    let frame = match read_frame(r, MAX_FRAME) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(StreamFault::Pipe(
                "the agent closed the pipe in the middle of a read".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(StreamFault::Other(anyhow!(
                "the agent sent an invalid reply: {e}"
            )))
        }
        Err(e) => {
            return Err(StreamFault::Pipe(format!(
                "reading from the agent failed: {e}"
            )))
        }
    };
    Ok(match frame.split_first() {
        Some((&FILE_DATA, _)) => FileReply::Data(FileData(frame)),
        Some((&FILE_MISSING, [])) => FileReply::Missing,
        Some((&FILE_REFUSED, msg)) => {
            FileReply::Refused(String::from_utf8_lossy(&msg[..msg.len().min(1024)]).into())
        }
        // The agent gave up on the stream and said why, as a control message.
        Some((b'{', _)) => {
            match serde_json::from_slice::<Response>(&frame).map(DestError::from_reply) {
                Ok(Err(refused)) => return Err(StreamFault::Other(refused.into())),
                _ => {
                    return Err(StreamFault::Other(anyhow!(
                        "the agent sent a malformed file reply"
                    )))
                }
            }
        }
        _ => {
            return Err(StreamFault::Other(anyhow!(
                "the agent sent a malformed file reply"
            )))
        }
    })
}

impl AgentConn {
    /// Over a transport process: write its `preamble` (the relay header),
    /// then say Hello.
    pub fn over_link(
        link: Link,
        via: Via,
        w: impl Write + Send + 'static,
        r: impl Read + Send + 'static,
        preamble: Option<&[u8]>,
        what: String,
    ) -> Result<Self> {
        let mut c = Self::from_pipes(Box::new(r), Box::new(w), what);
        c.link = Some((link, via));
        if let Some(p) = preamble {
            let res = c.w()?.write_all(p);
            if let Err(e) = res {
                return Err(c.lost(e));
            }
        }
        c.hello()?;
        Ok(c)
    }

    /// Over arbitrary pipes (tests run an in-process agent this way).
    pub fn from_pipes(r: Box<dyn Read + Send>, w: Box<dyn Write + Send>, what: String) -> Self {
        AgentConn {
            link: None,
            r: BufReader::with_capacity(1 << 20, r),
            w: Some(BufWriter::with_capacity(1 << 20, w)),
            what,
            connected: false,
            damaged: None,
            refusals: 0,
            agent_version: String::new(),
            features: Vec::new(),
            hide: None,
            linger: std::time::Duration::ZERO,
        }
    }

    /// On drop, close the agent's input and wait up to `d` for it to end
    /// (it releases an object store's lease on the way) before killing it.
    pub fn linger_on_drop(&mut self, d: std::time::Duration) {
        self.linger = d;
    }

    /// From now on, name volumes by their hidden names (format 2).
    pub fn hide_names(&mut self, keys: std::sync::Arc<crate::crypto::ArchiveKeys>) {
        self.hide = Some(keys);
    }

    /// Send one control message, volume names hidden where the archive
    /// wants them.
    fn send_req(&mut self, req: &Request) -> std::io::Result<()> {
        let req = super::hidden::hide(req, self.hide.as_deref());
        let w = self.w.as_mut().expect("checked by the caller");
        send_msg(w, &*req)
    }

    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Close the pipe towards the transport, let it exit, and say how it ended.
    fn link_failure(&mut self) -> String {
        drop(self.w.take());
        match self.link.as_mut() {
            Some((link, via)) => via.explain(&link.end(LOST_GRACE)),
            None => "the pipe closed".into(),
        }
    }

    /// The agent's refusal in `r`, if it is one; one that names a damaged
    /// chunk file is kept for [`AgentConn::take_damaged`].
    fn answer(&mut self, r: Response) -> Answer<Response> {
        DestError::from_reply(r).inspect_err(|refused| {
            self.refusals += 1;
            if refused.damaged.is_some() {
                self.damaged = Some(refused.clone());
            }
        })
    }

    /// The refusal, since the last call, that named a chunk file the agent
    /// found damaged (a `send --dedup` link target), so the caller can act
    /// on the typed field whatever became of the error on its way up.
    pub fn take_damaged(&mut self) -> Option<DestError> {
        self.damaged.take()
    }

    /// How many requests the agent refused on this connection so far.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    fn lost(&mut self, e: std::io::Error) -> anyhow::Error {
        // The agent may have answered with the reason before closing.
        if e.kind() != std::io::ErrorKind::InvalidData {
            if let Ok(Some(r)) = recv_msg::<_, Response>(&mut self.r) {
                if let Err(refused) = self.answer(r) {
                    return refused.into();
                }
            }
        }
        let why = self.link_failure();
        if self.connected {
            anyhow!(
                "connection to the agent at {} was lost ({e}): {why}",
                self.what
            )
        } else if e.kind() == std::io::ErrorKind::InvalidData {
            anyhow!(
                "the agent at {} answered with something that is not the sparsebak protocol ({e}); \
                 a shell startup file on the destination that prints to stdout corrupts the stream ({why})",
                self.what
            )
        } else {
            // Whether the write or the read noticed first is a race: say only why.
            anyhow!("cannot reach the agent at {}: {why}", self.what)
        }
    }

    fn expect_reply(&mut self) -> Result<Response> {
        Ok(self.expect_answer()??)
    }

    fn expect_answer(&mut self) -> Result<Answer<Response>> {
        match recv_msg::<_, Response>(&mut self.r) {
            Ok(Some(r)) => Ok(self.answer(r)),
            Ok(None) => Err(self.lost(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the pipe",
            ))),
            Err(e) => Err(self.lost(e)),
        }
    }

    fn w(&mut self) -> Result<&mut Writer> {
        if self.w.is_none() {
            bail!(
                "the connection to the agent at {} is not usable (lost earlier, or an upload is unfinished)",
                self.what
            );
        }
        Ok(self.w.as_mut().expect("checked"))
    }

    pub fn request(&mut self, req: &Request) -> Result<Response> {
        Ok(self.call(req)??)
    }

    /// Send `req`; the agent's reply or its refusal.
    fn call(&mut self, req: &Request) -> Result<Answer<Response>> {
        self.w()?;
        if let Err(e) = self.send_req(req) {
            return Err(self.lost(e));
        }
        self.expect_answer()
    }

    /// `DeleteVolume`; a refusal is the caller's to judge (`NotFound`: the
    /// archive has no such volume).
    pub fn delete_volume(&mut self, vol: &VolName) -> Result<Answer<()>> {
        let req = Request::DeleteVolume { vol: vol.clone() };
        Ok(match self.call(&req)? {
            Ok(Response::Ok) => Ok(()),
            Ok(r) => bail!("unexpected answer from the agent at {}: {r:?}", self.what),
            Err(refused) => Err(refused),
        })
    }

    pub(crate) fn hello(&mut self) -> Result<()> {
        match self.request(&Request::Hello {
            protocol: PROTOCOL_VERSION,
        })? {
            Response::Hello {
                protocol,
                agent_version,
                features,
            } if protocol == PROTOCOL_VERSION => {
                self.connected = true;
                self.agent_version = agent_version.chars().take(64).collect();
                self.features = features.into_iter().take(64).collect();
                Ok(())
            }
            r => bail!("the agent at {} answered Hello with {r:?}", self.what),
        }
    }

    pub fn open(&mut self, dest_path: &str, mountpoint: &str, write: bool) -> Result<Opened> {
        let req = Request::Open {
            dest_path: dest_path.into(),
            mountpoint: mountpoint.into(),
            write,
        };
        match self.request(&req)? {
            Response::Opened {
                header,
                free_bytes,
                total_bytes,
            } => Ok(Opened {
                header,
                free_bytes,
                total_bytes,
            }),
            r => bail!("unexpected answer to Open: {r:?}"),
        }
    }

    pub fn ok(&mut self, req: &Request) -> Result<()> {
        match self.request(req)? {
            Response::Ok => Ok(()),
            r => bail!("unexpected answer from the agent at {}: {r:?}", self.what),
        }
    }

    pub fn list_sessions(&mut self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)> {
        match self.request(&Request::ListSessions { vol: vol.clone() })? {
            Response::Sessions {
                committed,
                in_progress,
            } => Ok((committed, in_progress)),
            r => bail!("unexpected answer to ListSessions: {r:?}"),
        }
    }

    /// An agent that does not serve `ReadMeta` is older than arch-recover.
    /// Whether the agent announced optional request `f` in its Hello.
    pub fn has_feature(&self, f: &str) -> bool {
        self.features.iter().any(|x| x == f)
    }

    pub fn require_read_meta(&self) -> Result<()> {
        self.require(
            FEATURE_READ_META,
            "it cannot serve archive metadata for arch-recover",
        )
    }

    /// An agent that does not announce `feature` in its Hello is too old
    /// for what needs it (`why`).
    fn require(&self, feature: &str, why: &str) -> Result<()> {
        if self.features.iter().any(|f| f == feature) {
            return Ok(());
        }
        let version = if self.agent_version.is_empty() {
            "of unknown version"
        } else {
            &self.agent_version
        };
        bail!(
            "the agent at {} (sparsebak-agent {version}) is too old: {why}; \
             install sparsebak-agent {} there (matching versions, docs/FORMAT.md §13.6)",
            self.what,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Every committed session of `vol` on the destination, in name order,
    /// with the sha256 of its `info.json` (or why there is none), and the
    /// sha256 of `volume.json`. Pages of the agent's answer must follow
    /// each other in strictly ascending order (docs/FORMAT.md §17).
    pub fn session_digests(&mut self, vol: &VolName) -> Result<DestSessions> {
        self.require(
            FEATURE_SESSION_DIGESTS,
            "it cannot list session digests for the consistency check",
        )?;
        let mut out = DestSessions::default();
        loop {
            let after = out.sessions.last().map(|d| d.name.clone());
            let req = Request::SessionDigests {
                vol: vol.clone(),
                after: after.clone(),
            };
            let (page, volume_sha256, more) = match self.request(&req)? {
                Response::SessionDigests {
                    sessions,
                    volume_sha256,
                    more,
                } => (sessions, volume_sha256, more),
                r => bail!("unexpected answer to SessionDigests: {r:?}"),
            };
            if after.is_none() {
                out.volume_sha256 = volume_sha256;
            }
            let before = out.sessions.len();
            for d in page {
                if out.sessions.last().is_some_and(|l| l.name >= d.name) {
                    bail!(
                        "the agent at {} listed the sessions of volume {vol} out of order (at {})",
                        self.what,
                        d.name
                    );
                }
                out.sessions.push(d);
            }
            if !more {
                return Ok(out);
            }
            if out.sessions.len() == before || out.sessions.len() > MAX_SESSIONS {
                bail!(
                    "the agent at {} listed too many sessions of volume {vol} (or an empty page)",
                    self.what
                );
            }
        }
    }

    /// Part of a metadata file of `vol` (`volume.json`, `S_…/info.json`,
    /// `S_…/manifest`) from `offset`: at most [`META_PIECE`] bytes, checked
    /// against what was asked before they are handed over. A refusal
    /// (`NotFound`: no such file) is the caller's to judge.
    pub fn read_meta(
        &mut self,
        vol: &VolName,
        path: &str,
        offset: u64,
    ) -> Result<Answer<MetaPiece>> {
        self.require_read_meta()?;
        let req = Request::ReadMeta {
            vol: vol.clone(),
            path: path.into(),
            offset,
        };
        let (size, len) = match self.call(&req)? {
            Ok(Response::MetaPiece { size, len }) => (size, len),
            Ok(r) => bail!("unexpected answer to ReadMeta: {r:?}"),
            Err(refused) => return Ok(Err(refused)),
        };
        let fits = offset.checked_add(len).is_some_and(|end| end <= size);
        if len > META_PIECE as u64 || !fits {
            // The frame that follows cannot be trusted to be skipped: drop the link.
            self.kill();
            bail!(
                "the agent at {} sent an invalid piece of {path} of volume {vol}: {len} bytes at offset \
                 {offset} of a {size}-byte file (at most {META_PIECE} per piece)",
                self.what
            );
        }
        let frame = self.piece_frame(META_PIECE, || format!("{path} of volume {vol}"))?;
        if frame.len() as u64 != len {
            self.kill();
            bail!(
                "the agent at {} announced {len} bytes of {path} of volume {vol} but sent {}",
                self.what,
                frame.len()
            );
        }
        Ok(Ok(MetaPiece { size, data: frame }))
    }

    /// Start a session upload: the returned writer carries the tar stream;
    /// hand it back to [`AgentConn::finish_upload`].
    pub fn start_upload(
        &mut self,
        vol: &VolName,
        session: &SessionName,
        expect_last: Option<&SessionName>,
        volume_uuid: &str,
        format: sparsebak_common::SessionFormat,
        resume_from: Option<&SessionName>,
    ) -> Result<FrameWriter<Writer>> {
        let req = Request::PutSession {
            vol: vol.clone(),
            session: session.clone(),
            expect_last: expect_last.cloned(),
            volume_uuid: Some(volume_uuid.into()),
            format,
            resume_from: resume_from.cloned(),
        };
        self.w()?;
        if let Err(e) = self.send_req(&req) {
            return Err(self.lost(e));
        }
        Ok(FrameWriter::new(self.w.take().expect("pipe available")))
    }

    /// Close the upload stream; returns the agent's count of files and bytes stored.
    pub fn finish_upload(&mut self, fw: FrameWriter<Writer>) -> Result<(u64, u64)> {
        let w = fw.finish().map_err(|e| self.lost(e))?;
        self.w = Some(w);
        match self.expect_reply()? {
            Response::Stored { files, bytes } => Ok((files, bytes)),
            r => bail!("unexpected answer to PutSession: {r:?}"),
        }
    }

    /// Send a request followed by a data stream (`Dedup`); the returned
    /// writer carries the stream; hand it back to [`AgentConn::finish_stream`].
    pub fn start_stream(&mut self, req: &Request) -> Result<FrameWriter<Writer>> {
        self.w()?;
        if let Err(e) = self.send_req(req) {
            return Err(self.lost(e));
        }
        Ok(FrameWriter::new(self.w.take().expect("pipe available")))
    }

    /// Close a data stream and return the agent's answer.
    pub fn finish_stream(&mut self, fw: FrameWriter<Writer>) -> Result<Response> {
        let w = fw.finish().map_err(|e| self.lost(e))?;
        self.w = Some(w);
        self.expect_reply()
    }

    /// Turn a write error during an upload into the agent's stated reason.
    pub fn upload_failed(&mut self, e: std::io::Error) -> anyhow::Error {
        self.lost(e)
    }

    /// Stream `items` through the agent in order. An item with a path asks
    /// for that file (relative to the volume dir) and is handed to `on_item`
    /// with the reply; an item without one is handed over as it comes, in
    /// sequence. Requests are written on a second thread so the pipe never
    /// stalls, and at most [`READ_WINDOW`] items are in flight.
    /// `vol` is a 0.2 volume name, or one of ours made into one.
    pub fn read_files<T, I, F>(
        &mut self,
        vol: LegacyVolName,
        items: I,
        mut on_item: F,
    ) -> Result<()>
    where
        T: Send,
        I: Iterator<Item = (Option<String>, T)> + Send,
        F: FnMut(T, Option<FileReply>) -> Result<()>,
    {
        self.w()?;
        if let Err(e) = self.send_req(&Request::ReadFiles { vol }) {
            return Err(self.lost(e));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<(bool, T)>(READ_WINDOW);
        let w = self.w.as_mut().expect("pipe available");
        let r = &mut self.r;
        let result = std::thread::scope(|sc| {
            let writer = sc.spawn(move || -> std::io::Result<()> {
                for (path, item) in items {
                    if let Some(p) = &path {
                        write_frame(w, p.as_bytes())?;
                    }
                    match tx.try_send((path.is_some(), item)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(v)) => {
                            // Everything asked for must reach the agent before we wait.
                            w.flush()?;
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
                write_frame(w, &[])?;
                w.flush()
            });
            let mut outcome = Ok(());
            for (asked, item) in rx.iter() {
                let reply = if asked {
                    match read_reply(r) {
                        Ok(rep) => Some(rep),
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                } else {
                    None
                };
                if let Err(e) = on_item(item, reply) {
                    outcome = Err(StreamFault::Other(e));
                    break;
                }
            }
            drop(rx);
            let wres = writer.join().expect("writer thread");
            outcome.and(wres.map_err(|e| {
                StreamFault::Pipe(format!("writing requests to the agent failed: {e}"))
            }))
        });
        match result {
            Ok(()) => {}
            // The stream is out of step now; the connection cannot be reused.
            Err(StreamFault::Other(e)) => {
                // Let the agent finish what it is saying on stderr, then stop it.
                drop(self.w.take());
                if let Some((link, _)) = self.link.as_mut() {
                    link.end(STOP_GRACE);
                }
                return Err(e);
            }
            Err(StreamFault::Pipe(what)) => {
                let why = self.link_failure();
                bail!(
                    "connection to the agent at {} was lost ({what}): {why}",
                    self.what
                );
            }
        }
        match self.expect_reply()? {
            Response::Ok => Ok(()),
            r => bail!("unexpected answer to ReadFiles: {r:?}"),
        }
    }

    /// The data frame of a piece the agent announced (at most `max`
    /// bytes); the link is dropped when it is not one (`what` names the
    /// piece's file in the error).
    pub(super) fn piece_frame(&mut self, max: usize, what: impl Fn() -> String) -> Result<Vec<u8>> {
        match read_frame(&mut self.r, max) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(self.lost(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the agent closed the pipe",
            ))),
            Err(e) => {
                self.kill();
                bail!(
                    "the agent at {} sent an invalid piece of {}: {e}",
                    self.what,
                    what()
                );
            }
        }
    }

    fn kill(&mut self) {
        drop(self.w.take());
        if let Some((link, _)) = self.link.as_mut() {
            link.end(self.linger);
        }
    }

    /// Say goodbye and check that the transport and agent ended cleanly.
    pub fn close(mut self) -> Result<()> {
        self.ok(&Request::Bye)?;
        drop(self.w.take());
        if let Some((link, via)) = self.link.as_mut() {
            let ended = link.end(CLOSE_GRACE);
            if !ended.status.is_some_and(|s| s.success()) {
                bail!(
                    "the agent at {} did not end cleanly: {}",
                    self.what,
                    via.explain(&ended)
                );
            }
        }
        Ok(())
    }
}

impl Drop for AgentConn {
    fn drop(&mut self) {
        self.kill();
    }
}

#[path = "client_resume.rs"]
mod resume;
pub use resume::HeldPiece;

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
