//! The `ReadFiles` stream: requests written ahead on a second thread,
//! at most [`READ_WINDOW`] in flight, each reply bounded and checked for
//! shape before it is handed over; and the bounded data frame that
//! follows an announced piece.

use super::{AgentConn, DestError, Reader, STOP_GRACE};
use anyhow::{anyhow, bail, Result};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::proto::{
    read_frame, write_frame, Request, Response, FILE_DATA, FILE_MISSING, FILE_REFUSED, MAX_FRAME,
};
use std::io::Write;
use std::sync::mpsc::TrySendError;

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
}
