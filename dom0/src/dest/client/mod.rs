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
//!
//! The connection itself (pipes, refusals, a lost link, goodbye) is here;
//! the requests are in `requests`, the `ReadFiles` stream in `read_stream`,
//! the upload streams in `upload`, and `ResumeCheck` in `resume`.

use super::link::Link;
use super::transport::Via;
use anyhow::{anyhow, bail, Result};
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::proto::{recv_msg, send_msg, ErrorKind, Request, Response};
use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Duration;

mod read_stream;
mod requests;
mod resume;
mod upload;

pub use read_stream::{FileData, FileReply, READ_WINDOW};
pub use requests::{DestSessions, MetaPiece, Opened};
pub use resume::HeldPiece;

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

    pub fn ok(&mut self, req: &Request) -> Result<()> {
        match self.request(req)? {
            Response::Ok => Ok(()),
            r => bail!("unexpected answer from the agent at {}: {r:?}", self.what),
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

#[cfg(test)]
mod tests;
