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
//!
//! Messages are typed ([`request`], [`response`]): names are validated as a
//! message is decoded, on either side, and the JSON is the same as when
//! they were plain strings.

mod request;
mod response;

pub use request::{FieldProblem, RawRequest, Request, RequestError};
pub use response::{ErrorKind, Response, SessionDigest, MAX_PROBLEMS};

use serde::{de::DeserializeOwned, Serialize};
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
/// Named in [`Response::Hello`]'s `features` by an agent that serves
/// [`Request::ResumeCheck`] and `PutSession`'s `resume_from` (docs/FORMAT.md
/// §19). Without it dom0 sends an interrupted session again in full.
pub const FEATURE_RESUME: &str = "resume";
/// One `ResumeHeld` record: the chunk's address (u64 big-endian), then the
/// SHA-256 of its file as the agent read it.
pub const RESUME_RECORD: usize = 40;
/// Most records one `ResumeHeld` reply carries (a 2.5 MiB frame).
pub const RESUME_PIECE: usize = 65536;
/// Named in [`Response::Hello`]'s `features` by an agent that serves
/// [`Request::SessionDigests`]. dom0 needs it for its consistency check
/// (docs/FORMAT.md §17) and calls an agent without it too old.
pub const FEATURE_SESSION_DIGESTS: &str = "session_digests";
/// Most sessions one [`Response::SessionDigests`] lists (well under
/// [`MAX_MESSAGE`]: about 130 bytes each).
pub const DIGEST_PAGE: usize = 2000;
/// Largest `info.json` either side reads (docs/FORMAT.md §15.2).
pub const MAX_INFO_FILE: u64 = 64 * 1024;
/// The agent serves `RewrapKey` (arch-passwd).
pub const FEATURE_REWRAP_KEY: &str = "rewrap_key";

/// `ReadFiles` reply status: the rest of the frame is the file's bytes.
pub const FILE_DATA: u8 = 0;
/// `ReadFiles` reply status: the file does not exist.
pub const FILE_MISSING: u8 = 1;
/// `ReadFiles` reply status: the path was refused or unreadable; the rest is a message.
pub const FILE_REFUSED: u8 = 2;

/// Write one frame.
pub fn write_frame<W: Write>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("frame too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(payload)
}

/// Read a frame's 4-byte length. `Ok(None)` on a clean EOF before it.
fn read_len<R: Read>(r: &mut R) -> io::Result<Option<usize>> {
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
    Ok(Some(u32::from_be_bytes(len) as usize))
}

fn too_large(len: usize, max: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame of {len} bytes exceeds the limit of {max}"),
    )
}

/// Read one frame of at most `max` bytes. `Ok(None)` on a clean EOF before
/// the length; a truncated frame or an oversized length is an error.
/// The payload is read into reserved, uninitialised capacity (no zero-fill
/// of every frame before the copy).
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let Some(len) = read_len(r)? else {
        return Ok(None);
    };
    if len > max {
        return Err(too_large(len, max));
    }
    let mut buf = Vec::with_capacity(len);
    let got = r.take(len as u64).read_to_end(&mut buf)?;
    if got < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("pipe closed inside a frame of {len} bytes"),
        ));
    }
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
///
/// It reads each frame's payload straight into the caller's buffer, so a
/// stream costs no copy beyond the caller's own (a frame is not gathered
/// first). A frame over [`MAX_FRAME`] is refused at its length, as
/// [`read_frame`] does; a stream cut inside a frame is an `UnexpectedEof`
/// error once the bytes before the cut have been handed over.
pub struct FrameReader<R: Read> {
    inner: R,
    /// Payload bytes of the current frame not read yet.
    left: usize,
    done: bool,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            left: 0,
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
        while self.left == 0 {
            if self.done {
                return Ok(0);
            }
            match read_len(&mut self.inner)? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "pipe closed inside a data stream",
                    ))
                }
                Some(0) => self.done = true,
                Some(len) if len > MAX_FRAME => return Err(too_large(len, MAX_FRAME)),
                Some(len) => self.left = len,
            }
        }
        if out.is_empty() {
            return Ok(0);
        }
        let want = out.len().min(self.left);
        let n = self.inner.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("pipe closed inside a frame ({} bytes missing)", self.left),
            ));
        }
        self.left -= n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(s: &str) -> crate::names::VolName {
        crate::names::VolName::new(s).unwrap()
    }
    fn ses(s: &str) -> crate::names::SessionName {
        crate::names::SessionName::new(s).unwrap()
    }

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
                vol: vol("v"),
                session: ses("S_20260101-000000"),
                expect_last: None,
                volume_uuid: None,
                format: crate::SessionFormat::Tar,
                resume_from: None,
            },
            Request::PutSession {
                vol: vol("v"),
                session: ses("S_20260102-000000"),
                expect_last: None,
                volume_uuid: Some("u".into()),
                format: crate::SessionFormat::Folders,
                resume_from: Some(ses("S_20260101-000000")),
            },
            Request::ResumeCheck {
                vol: vol("v"),
                session: ses("S_20260101-000000"),
                after: Some(1 << 40),
            },
            Request::PrunePart {
                vol: vol("v"),
                file: "plan".into(),
                offset: 0,
                data: "sparsebak-prune-plan 1\n".into(),
            },
            Request::Prune {
                vol: vol("v"),
                target: ses("S_20260102-000000"),
                pruned: vec![ses("S_20260101-000000")],
            },
            Request::DeleteArchive { uuid: "u".into() },
            Request::ReadMeta {
                vol: vol("v"),
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

    /// The JSON is what it was when names were plain strings.
    #[test]
    fn typed_messages_keep_their_bytes() {
        let put = Request::PutSession {
            vol: vol("v"),
            session: ses("S_20260101-000000"),
            expect_last: Some(ses("S_20251231-000000")),
            volume_uuid: Some("u".into()),
            format: crate::SessionFormat::Folders,
            resume_from: None,
        };
        assert_eq!(
            serde_json::to_string(&put).unwrap(),
            r#"{"op":"put_session","vol":"v","session":"S_20260101-000000","expect_last":"S_20251231-000000","volume_uuid":"u"}"#
        );
        let tar = br#"{"op":"put_session","vol":"v","session":"S_20260101-000000","expect_last":null,"format":"tar"}"#;
        let q: Request = serde_json::from_slice(tar).unwrap();
        assert_eq!(serde_json::to_vec(&q).unwrap(), tar);
        let list = br#"{"reply":"sessions","committed":["S_20260101-000000"],"in_progress":["S_20260102-000000-tmp"]}"#;
        let r: Response = serde_json::from_slice(list).unwrap();
        assert_eq!(serde_json::to_vec(&r).unwrap(), list);
        let err = br#"{"reply":"error","kind":"not_found","message":"m"}"#;
        let r: Response = serde_json::from_slice(err).unwrap();
        assert_eq!(serde_json::to_vec(&r).unwrap(), err);
        let damaged = br#"{"reply":"error","kind":"mismatch","message":"m","damaged":"volumes/v/S_20260101-000000/000000000/x0000000000030000"}"#;
        let r: Response = serde_json::from_slice(damaged).unwrap();
        let Response::Error {
            damaged: Some(loc), ..
        } = &r
        else {
            panic!("{r:?}")
        };
        assert_eq!(loc.addr.0, 0x30000);
        assert_eq!(serde_json::to_vec(&r).unwrap(), damaged);
    }

    /// An invalid name from the other side is a decode error naming the field.
    #[test]
    fn invalid_names_are_decode_errors_naming_the_field() {
        let raw = RawRequest::Commit {
            vol: "v".into(),
            session: "S_../x".into(),
            volume_info: "{}".into(),
        };
        let e = Request::try_from(raw.clone()).unwrap_err();
        assert_eq!((e.op, e.field), ("commit", "session"));
        assert_eq!(
            e.problem.to_string(),
            r#"invalid session name "S_../x": expected S_YYYYMMDD-HHMMSS"#
        );
        let text = serde_json::to_vec(&raw).unwrap();
        let e = serde_json::from_slice::<Request>(&text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("field session of commit: invalid session name"),
            "{e}"
        );
        let bad_format = RawRequest::PutSession {
            vol: "v".into(),
            session: "S_20260101-000000".into(),
            expect_last: None,
            volume_uuid: None,
            format: Some("zip".into()),
            resume_from: None,
        };
        let e = Request::try_from(bad_format).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"field format of put_session: session format "zip" is not known (folders, tar)"#
        );
        // A 0.2 name passes ReadFiles (the agent narrows it), not ListSessions.
        let odd = |q: RawRequest| Request::try_from(q).is_ok();
        assert!(odd(RawRequest::ReadFiles { vol: "-odd".into() }));
        assert!(!odd(RawRequest::ReadFiles { vol: "..".into() }));
        assert!(!odd(RawRequest::ListSessions { vol: "-odd".into() }));
        let listed = br#"{"reply":"sessions","committed":["S_x"],"in_progress":[]}"#;
        let e = serde_json::from_slice::<Response>(listed)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(r#"committed: invalid session name "S_x""#),
            "{e}"
        );
        let listed = br#"{"reply":"volumes","names":["a/b"]}"#;
        let e = serde_json::from_slice::<Response>(listed)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(r#"names: invalid volume name "a/b""#), "{e}");
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
        // A frame cut short: what came is handed over, then UnexpectedEof.
        let mut fr = FrameReader::new(&short[..]);
        let mut got = Vec::new();
        let e = fr.read_to_end(&mut got).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert_eq!(got, b"he");
        // An oversized frame inside a stream is refused at its length.
        let mut fr = FrameReader::new(&big[..]);
        let e = fr.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // A frame shorter than its length, at the end of a message stream.
        let mut msg = Vec::new();
        msg.extend_from_slice(&10u32.to_be_bytes());
        msg.extend_from_slice(b"abc");
        let e = read_frame(&mut &msg[..], MAX_FRAME).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn frames_of_any_size_read_in_pieces_of_any_size() {
        let mut pipe = Vec::new();
        let mut want = Vec::new();
        for (i, n) in [1usize, 7, 4096, 3, 70_000].into_iter().enumerate() {
            let part: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
            write_frame(&mut pipe, &part).unwrap();
            want.extend_from_slice(&part);
        }
        write_frame(&mut pipe, &[]).unwrap();
        write_frame(&mut pipe, b"next").unwrap();
        for step in [1usize, 5, 4096, 1 << 20] {
            let mut fr = FrameReader::new(&pipe[..]);
            let mut back = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = fr.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            assert!(fr.is_done());
            assert_eq!(back, want, "step {step}");
            let mut rest = fr.into_inner();
            assert_eq!(read_frame(&mut rest, 10).unwrap().unwrap(), b"next");
        }
    }
}
