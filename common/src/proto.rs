//! The dom0 ↔ agent protocol.
//!
//! Every destination is a byte pipe: dom0 writes requests to the agent's
//! stdin and reads responses from its stdout, with no side channel. Everything
//! on the pipe is a *frame*: a 4-byte big-endian length, then that many bytes.
//!
//! * A control message is one frame holding a JSON [`Request`] or [`Response`].
//! * A data stream is a run of non-empty frames closed by an empty frame
//!   ([`FrameWriter`] / [`FrameReader`]). `PutSession` is followed by a data
//!   stream carrying a tar archive; `ReadFiles` by a stream of path frames.
//! * A `ReadFiles` reply is one frame per path: a status byte
//!   ([`FILE_DATA`], [`FILE_MISSING`], [`FILE_REFUSED`]) and the payload.
//!
//! Both sides bound every frame by [`MAX_FRAME`] before allocating.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{self, Read, Write};

/// Protocol version; bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts: a 16 MiB chunk plus headroom.
pub const MAX_FRAME: usize = 20 * 1024 * 1024;
/// Largest control message (JSON) either side accepts.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// Size of the frames [`FrameWriter`] emits.
pub const DATA_FRAME: usize = 1024 * 1024;
/// Most bytes of a file one `ReadMeta` reply carries.
pub const META_PIECE: usize = 4 * 1024 * 1024;
/// Named in [`Response::Hello`]'s `features` by an agent that serves
/// [`Request::ReadMeta`]. An agent without it is too old for `arch-recover`.
pub const FEATURE_READ_META: &str = "read_meta";

/// `ReadFiles` reply status: the rest of the frame is the file's bytes.
pub const FILE_DATA: u8 = 0;
/// `ReadFiles` reply status: the file does not exist.
pub const FILE_MISSING: u8 = 1;
/// `ReadFiles` reply status: the path was refused or unreadable; the rest is a message.
pub const FILE_REFUSED: u8 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol: u32,
    },
    /// Open the archive under `dest_path`, which must lie on the file system
    /// mounted at `mountpoint`. `write` takes the archive lock.
    Open {
        dest_path: String,
        mountpoint: String,
        write: bool,
    },
    /// Open the sparsebak 0.2 archive (`<dest_path>/sparsebak/default/`)
    /// read-only: no lock, nothing created. Answered by `Opened` without a
    /// header; afterwards only `ReadFiles` (0.2 chunk paths) and `Bye` are
    /// accepted. See docs/FORMAT.md §13.
    OpenLegacy {
        dest_path: String,
        mountpoint: String,
    },
    /// Create the archive with this header (JSON text). Fails if one exists.
    InitArchive {
        header: String,
    },
    ListVolumes,
    ListSessions {
        vol: String,
    },
    /// Start a session; a data stream with a tar archive follows. Members are
    /// chunk files `<9hex>/x<16hex>`, then `manifest`, then `info.json`.
    /// `expect_last` is dom0's newest committed session for the volume;
    /// `volume_uuid` is dom0's identity of the volume, which lets the agent
    /// recognise sessions it committed for this volume that dom0 never did.
    PutSession {
        vol: String,
        session: String,
        expect_last: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_uuid: Option<String>,
        /// How the agent stores the session: `folders` (the default when
        /// absent) or `tar` (docs/FORMAT.md §13).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// Make the session durable and visible, then write `volume.json`.
    Commit {
        vol: String,
        session: String,
        volume_info: String,
    },
    /// A stream of path frames follows (`S_…/<9hex>/x<16hex>`, relative to the
    /// volume dir); each is answered by one reply frame, in order.
    ReadFiles {
        vol: String,
    },
    /// Read part of a committed session's `info.json` or `manifest`
    /// (`path` = `S_…/info.json`, `S_…/manifest`) or of the volume's
    /// `volume.json`, from byte `offset`: disaster recovery of dom0's
    /// metadata (docs/FORMAT.md §15). Answered by [`Response::MetaPiece`]
    /// followed by one frame of exactly `len` bytes (at most [`META_PIECE`]),
    /// or by an error. Advertised as [`FEATURE_READ_META`].
    ReadMeta {
        vol: String,
        path: String,
        offset: u64,
    },
    /// Remove a volume's data from the archive.
    DeleteVolume {
        vol: String,
    },
    /// Upload part of a prune plan into `<vol>/.prune-plan-tmp/<file>`, where
    /// `file` is `plan`, `manifest` or `info.json` (see [`crate::plan`]).
    /// `offset` must equal the bytes of that file received so far; `plan` at
    /// offset 0 starts a new upload, discarding any earlier one.
    PrunePart {
        vol: String,
        file: String,
        offset: u64,
        data: String,
    },
    /// Carry out the uploaded plan: merge `pruned` (oldest first) into
    /// `target`. The agent first records the plan durably as
    /// `<vol>/.prune-plan/`, so an interrupted prune is completed by the next
    /// request on the volume. Answered by [`Response::Pruned`].
    Prune {
        vol: String,
        target: String,
        pruned: Vec<String>,
    },
    /// Remove the whole archive directory. `uuid` must be the archive's.
    DeleteArchive {
        uuid: String,
    },
    /// Check that the destination supports hard links (needed by
    /// deduplication): link `archive.json` to a temporary name and remove it.
    CheckHardlinks,
    /// Replace duplicate chunk files by hard links. A data stream follows,
    /// one [`crate::linkref::DedupOp`] line per operation; answered by
    /// [`Response::Deduped`] (docs/FORMAT.md §12).
    Dedup,
    Bye,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The mountpoint is not mounted, or the path is not on it.
    NotMounted,
    /// The destination file system is full.
    NoSpace,
    /// Another process holds the archive lock.
    Locked,
    /// No archive, volume or session by that name.
    NotFound,
    /// The archive already exists.
    Exists,
    /// The request broke a layout or protocol rule.
    Invalid,
    /// The archive does not match what dom0 expects (e.g. rolled back).
    Mismatch,
    /// Any other I/O failure.
    Io,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Hello {
        protocol: u32,
        agent_version: String,
        /// Optional requests this agent serves (e.g. [`FEATURE_READ_META`]);
        /// absent from agents older than the first such request.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    Opened {
        header: Option<String>,
        free_bytes: u64,
        total_bytes: u64,
    },
    Volumes {
        names: Vec<String>,
        /// Entries of `volumes/` that are not valid volume names (or not
        /// directories), at most [`MAX_PROBLEMS`], each cut to 200
        /// characters; never used, reported by `arch-recover`. Absent from
        /// older agents.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ignored: Vec<String>,
    },
    Sessions {
        committed: Vec<String>,
        in_progress: Vec<String>,
    },
    Stored {
        files: u64,
        bytes: u64,
    },
    /// A prune is complete: `moved` chunk files were renamed into the
    /// target; `already_done` if an earlier, interrupted run had finished it.
    Pruned {
        moved: u64,
        already_done: bool,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// Answer to `ReadMeta`: the file is `size` bytes; the next frame holds
    /// its `len` bytes from the requested offset (`len` is 0 at the end).
    MetaPiece {
        size: u64,
        len: u64,
    },
    /// `Dedup` is done: `linked` duplicates were replaced (`bytes_saved`
    /// freed), `already` were the same file already, `problems` (at most
    /// [`MAX_PROBLEMS`] of `problem_count`) explain operations skipped
    /// because a file was damaged or missing.
    Deduped {
        linked: u64,
        already: u64,
        bytes_saved: u64,
        problem_count: u64,
        problems: Vec<String>,
    },
}

/// Most problem messages a [`Response::Deduped`] carries.
pub const MAX_PROBLEMS: usize = 100;

/// Write one frame.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(payload)
}

/// Read one frame of at most `max` bytes. `Ok(None)` on a clean EOF before
/// the length; a truncated frame or an oversized length is an error.
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "pipe closed inside a frame length",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("pipe closed inside a frame of {len} bytes"),
            )
        } else {
            e
        }
    })?;
    Ok(Some(buf))
}

/// Send a control message.
pub fn send_msg<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame(w, &bytes)?;
    w.flush()
}

/// Receive a control message; `Ok(None)` on clean EOF.
pub fn recv_msg<R: Read, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    match read_frame(r, MAX_MESSAGE)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed message: {e}"),
            )
        }),
    }
}

/// Writes a data stream: buffers into frames of [`DATA_FRAME`] bytes;
/// [`FrameWriter::finish`] flushes and writes the closing empty frame.
pub struct FrameWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            buf: Vec::with_capacity(DATA_FRAME),
        }
    }
    fn flush_frame(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            write_frame(&mut self.inner, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
    /// Close the stream and hand back the pipe.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_frame()?;
        write_frame(&mut self.inner, &[])?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = DATA_FRAME - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == DATA_FRAME {
            self.flush_frame()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_frame()?;
        self.inner.flush()
    }
}

/// Reads a data stream as a plain byte stream, up to its closing empty frame.
pub struct FrameReader<R: Read> {
    inner: R,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            cur: Vec::new(),
            pos: 0,
            done: false,
        }
    }
    /// Consume whatever is left of the stream (after an early error), so the
    /// pipe is positioned at the next control message.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 65536];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
    pub fn is_done(&self) -> bool {
        self.done
    }
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for FrameReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match read_frame(&mut self.inner, MAX_FRAME)? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "pipe closed inside a data stream",
                    ))
                }
                Some(f) if f.is_empty() => self.done = true,
                Some(f) => {
                    self.cur = f;
                    self.pos = 0;
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let reqs = vec![
            Request::Hello { protocol: 1 },
            Request::Open {
                dest_path: "/m/x".into(),
                mountpoint: "/m".into(),
                write: true,
            },
            Request::PutSession {
                vol: "v".into(),
                session: "S_20260101-000000".into(),
                expect_last: None,
                volume_uuid: None,
                format: Some("tar".into()),
            },
            Request::PrunePart {
                vol: "v".into(),
                file: "plan".into(),
                offset: 0,
                data: "sparsebak-prune-plan 1\n".into(),
            },
            Request::Prune {
                vol: "v".into(),
                target: "S_20260102-000000".into(),
                pruned: vec!["S_20260101-000000".into()],
            },
            Request::DeleteArchive { uuid: "u".into() },
            Request::ReadMeta {
                vol: "v".into(),
                path: "S_20260101-000000/manifest".into(),
                offset: 1 << 33,
            },
            Request::Bye,
        ];
        let mut pipe = Vec::new();
        for r in &reqs {
            send_msg(&mut pipe, r).unwrap();
        }
        let mut rd = &pipe[..];
        for r in &reqs {
            assert_eq!(&recv_msg::<_, Request>(&mut rd).unwrap().unwrap(), r);
        }
        assert!(recv_msg::<_, Request>(&mut rd).unwrap().is_none());
    }

    #[test]
    fn hello_without_features_still_parses() {
        let old = br#"{"reply":"hello","protocol":1,"agent_version":"0.3.0"}"#;
        let r: Response = serde_json::from_slice(old).unwrap();
        assert_eq!(
            r,
            Response::Hello {
                protocol: 1,
                agent_version: "0.3.0".into(),
                features: vec![]
            }
        );
        let piece = Response::MetaPiece { size: 5, len: 3 };
        let text = serde_json::to_string(&piece).unwrap();
        assert_eq!(text, r#"{"reply":"meta_piece","size":5,"len":3}"#);
    }

    #[test]
    fn data_stream_round_trip_then_message() {
        let data: Vec<u8> = (0..3 * DATA_FRAME + 17).map(|i| (i * 7) as u8).collect();
        let mut fw = FrameWriter::new(Vec::new());
        fw.write_all(&data).unwrap();
        let mut pipe = fw.finish().unwrap();
        send_msg(&mut pipe, &Response::Ok).unwrap();
        let mut fr = FrameReader::new(&pipe[..]);
        let mut back = Vec::new();
        fr.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let mut rest = fr.into_inner();
        assert_eq!(
            recv_msg::<_, Response>(&mut rest).unwrap(),
            Some(Response::Ok)
        );
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut big = Vec::new();
        big.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(read_frame(&mut &big[..], MAX_FRAME).is_err());
        let mut short = Vec::new();
        write_frame(&mut short, b"hello").unwrap();
        short.truncate(6);
        assert!(read_frame(&mut &short[..], MAX_FRAME).is_err());
        assert!(read_frame(&mut &[0u8, 0][..], MAX_FRAME).is_err());
        let mut fr = FrameReader::new(&[][..]);
        assert!(fr.read(&mut [0u8; 4]).is_err());
    }
}
