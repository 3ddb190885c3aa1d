//! Fixtures shared by the agent's integration tests.
//!
//! * [`Fixture`]: a [`Sandbox`] (`dest/`, the archive's destination path, and
//!   `outside/`, files the agent must never touch) with an initialised
//!   archive, and a [`Tree`] snapshot to prove nothing changed outside it.
//! * [`Agent`]: `sparsebak_agent::serve` running on a thread, spoken to over a
//!   Unix socket pair exactly as dom0 speaks to it over a pipe (through the
//!   shared [`Peer`]).
//! * [`Tar`]: raw tar streams, byte by byte, so hostile headers (`..`, links,
//!   devices, long names) can be built where `tar::Header::set_path` refuses.
#![allow(dead_code)]

use sparsebak_common::header::{ArchiveHeader, Compression};
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    read_frame, write_frame, ErrorKind, FrameWriter, RawRequest as Request, Response, MAX_FRAME,
    PROTOCOL_VERSION,
};
use sparsebak_common::units::ChunkSize;
pub use sparsebak_testing::mounts::{is_mount_point, mount_point_of};
use sparsebak_testing::peer::Peer;
pub use sparsebak_testing::sandbox::Sandbox;
use sparsebak_testing::tree::{self, Kind};
use std::collections::BTreeMap;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const VOL: &str = "vol1";
pub const S0: &str = "S_20251231-235959";
pub const S1: &str = "S_20260101-000000";
pub const S2: &str = "S_20260102-000000";
pub const S3: &str = "S_20260103-000000";
/// The archive's chunk factor: 64 KiB chunks keep the fixtures small.
pub const CHUNK_FACTOR: u64 = 1;
/// How long any single reply may take before the test calls it a hang.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn chunk_size() -> ChunkSize {
    ChunkSize::from_factor(CHUNK_FACTOR).unwrap()
}

pub fn header_json() -> String {
    let h = ArchiveHeader::new(
        "0b5e7a1c-hostile-test".into(),
        chunk_size(),
        Compression::default(),
        "2026-01-01T00:00:00Z".into(),
    );
    serde_json::to_string(&h).unwrap()
}

/// A [`Sandbox`] (its `root`, `dest` and `outside` are reached through
/// `Deref`) and the mount point the agent is told it is on.
pub struct Fixture {
    pub sandbox: Sandbox,
    pub mountpoint: PathBuf,
}

impl std::ops::Deref for Fixture {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Fixture {
    /// A temp dir with `dest/` and `outside/canary`, no archive yet.
    pub fn uninit() -> Fixture {
        let sandbox = Sandbox::new();
        let mountpoint = mount_point_of(sandbox.root.path());
        Fixture {
            sandbox,
            mountpoint,
        }
    }

    /// An initialised, empty archive under `dest/`.
    pub fn new() -> Fixture {
        let fx = Fixture::uninit();
        let mut ag = fx.agent(true);
        assert_eq!(
            ag.call(&Request::InitArchive {
                header: header_json()
            }),
            Response::Ok
        );
        ag.bye();
        fx
    }

    pub fn dest_str(&self) -> String {
        self.dest.to_str().unwrap().to_string()
    }
    pub fn mp_str(&self) -> String {
        self.mountpoint.to_str().unwrap().to_string()
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.dest.join("sparsebak")
    }
    pub fn vol_dir(&self, vol: &str) -> PathBuf {
        self.archive_dir().join("volumes").join(vol)
    }
    pub fn tmp_dir(&self, vol: &str, session: &str) -> PathBuf {
        self.vol_dir(vol).join(format!("{session}-tmp"))
    }

    /// An agent that has said hello and opened this archive.
    pub fn agent(&self, write: bool) -> Agent {
        let mut ag = Agent::start();
        match ag.open(&self.dest_str(), &self.mp_str(), write) {
            Response::Opened { .. } => ag,
            other => panic!("cannot open the fixture archive: {other:?}"),
        }
    }

    /// Store and commit a valid session; returns what was stored.
    pub fn commit_session(&self, session: &str, expect_last: Option<&str>) -> Session {
        self.commit_session_as(session, expect_last, None)
    }

    /// [`Fixture::commit_session`] with a session `format` (`Some("tar")`).
    pub fn commit_session_as(
        &self,
        session: &str,
        expect_last: Option<&str>,
        format: Option<&str>,
    ) -> Session {
        let s = Session::sample(session);
        let mut ag = self.agent(true);
        let resp = ag.put_format(VOL, session, expect_last, None, format, s.tar());
        assert_eq!(
            resp,
            Response::Stored {
                files: s.files(),
                bytes: s.bytes()
            }
        );
        let commit = Request::Commit {
            vol: VOL.into(),
            session: session.into(),
            volume_info: s.volume_info.clone(),
        };
        assert_eq!(ag.call(&commit), Response::Ok);
        ag.bye();
        s
    }

    pub fn snapshot(&self) -> Tree {
        Tree::of(self.root.path())
    }

    /// Everything in `before` is unchanged; the only new paths are `allowed`
    /// (relative to the fixture root), and each of those is an empty dir.
    pub fn assert_unchanged(&self, before: &Tree, allowed: &[PathBuf]) {
        let after = self.snapshot();
        for (p, d) in &before.0 {
            assert_eq!(after.0.get(p), Some(d), "{} changed", p.display());
        }
        for (p, d) in &after.0 {
            if before.0.contains_key(p) {
                continue;
            }
            let full = self.root.path().join(p);
            assert!(
                allowed.contains(&full) && d == "dir" && fs::read_dir(&full).unwrap().count() == 0,
                "new path {} ({d}) appeared",
                p.display()
            );
        }
    }
}

/// A valid session: chunk files, manifest and info.json.
pub struct Session {
    pub chunks: Vec<(u64, Vec<u8>)>,
    pub manifest: Vec<u8>,
    pub info: Vec<u8>,
    pub volume_info: String,
}

impl Session {
    pub fn sample(name: &str) -> Session {
        let body = |seed: u8, n: usize| -> Vec<u8> {
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect()
        };
        let seed = name
            .bytes()
            .fold(0u8, |a, b| a.wrapping_mul(7).wrapping_add(b));
        let chunks = vec![
            (0, body(seed, 4000)),
            (0x10000, body(seed ^ 1, 65536)),
            (0x1000_0000, body(seed ^ 2, 17)),
        ];
        let manifest = chunks
            .iter()
            .map(|(a, _)| format!("{:064x} x{a:016x}\n", *a + u64::from(seed)))
            .collect::<String>()
            .into_bytes();
        Session {
            chunks,
            manifest,
            info: format!("{{\"session\":\"{name}\"}}\n").into_bytes(),
            volume_info: format!("{{\"last\":\"{name}\"}}"),
        }
    }
    pub fn tar(&self) -> Vec<u8> {
        let mut t = Tar::new();
        for (a, d) in &self.chunks {
            t = t.file(&chunk_path(*a), d);
        }
        t.file("manifest", &self.manifest)
            .file("info.json", &self.info)
            .finish()
    }
    pub fn files(&self) -> u64 {
        self.chunks.len() as u64 + 2
    }
    pub fn bytes(&self) -> u64 {
        let c: usize = self.chunks.iter().map(|(_, d)| d.len()).sum();
        (c + self.manifest.len() + self.info.len()) as u64
    }
}

/// `<9hex>/x<16hex>`, as the layout names a chunk.
pub fn chunk_path(addr: u64) -> String {
    sparsebak_common::names::chunk_rel_path(sparsebak_common::units::ByteOffset(addr))
}

/// A map from relative path to a description of what is there; symlinks are
/// recorded, not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree(pub BTreeMap<PathBuf, String>);

impl Tree {
    pub fn of(root: &Path) -> Tree {
        let t = tree::walk(root, |_| false)
            .into_iter()
            .map(|e| {
                let desc = match &e.kind {
                    Kind::Symlink(target) => format!("symlink -> {}", target.display()),
                    Kind::Dir => "dir".to_string(),
                    Kind::File => describe_file(&e.path),
                    Kind::Other(t) => format!("special {t:?}"),
                };
                (e.rel, desc)
            })
            .collect();
        Tree(t)
    }
}

/// Size and a fast (non-cryptographic) hash of a file's bytes.
fn describe_file(p: &Path) -> String {
    let mut h = DefaultHasher::new();
    let mut f = fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        len += n as u64;
        h.write(&buf[..n]);
    }
    format!("file {len} bytes, hash {:x}", h.finish())
}

/// An in-process agent on the far end of a socket pair. Both halves of the
/// [`Peer`] are the same socket (two handles).
pub struct Agent {
    peer: Peer<UnixStream, UnixStream>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Agent {
    /// Start the agent and exchange `Hello`.
    pub fn start() -> Agent {
        let mut ag = Agent::start_silent();
        let hello = ag.peer.hello();
        assert!(matches!(hello, Response::Hello { protocol, .. } if protocol == PROTOCOL_VERSION));
        ag
    }

    /// Start the agent without saying anything to it.
    pub fn start_silent() -> Agent {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(PATIENCE)).unwrap();
        ours.set_write_timeout(Some(PATIENCE)).unwrap();
        let thread = std::thread::spawn(move || {
            let r = theirs.try_clone().unwrap();
            sparsebak_agent::serve(r, theirs)
        });
        Agent {
            peer: Peer::new(ours.try_clone().unwrap(), ours),
            thread: Some(thread),
        }
    }

    /// The raw socket, for tests that speak bytes rather than messages.
    pub fn sock(&mut self) -> &mut UnixStream {
        self.peer.writer()
    }

    pub fn send(&mut self, req: &Request) {
        self.peer.send(req).unwrap();
    }

    /// The next response; `None` if the agent closed the pipe.
    pub fn recv(&mut self) -> Option<Response> {
        self.peer.recv().expect("reading a response from the agent")
    }

    pub fn call(&mut self, req: &Request) -> Response {
        self.send(req);
        self.recv()
            .expect("the agent closed the pipe instead of answering")
    }

    pub fn open(&mut self, dest: &str, mountpoint: &str, write: bool) -> Response {
        self.peer.open(dest, mountpoint, write)
    }

    /// `PutSession` followed by `data` as a framed data stream, written on
    /// another thread so an agent that stops reading early cannot deadlock
    /// the test.
    pub fn put(
        &mut self,
        vol: &str,
        session: &str,
        expect_last: Option<&str>,
        data: Vec<u8>,
    ) -> Response {
        self.put_as(vol, session, expect_last, None, data)
    }

    /// [`Agent::put`] naming dom0's volume uuid.
    pub fn put_as(
        &mut self,
        vol: &str,
        session: &str,
        expect_last: Option<&str>,
        volume_uuid: Option<&str>,
        data: Vec<u8>,
    ) -> Response {
        self.put_format(vol, session, expect_last, volume_uuid, None, data)
    }

    /// [`Agent::put_as`] with a session `format` (`None`: folders).
    pub fn put_format(
        &mut self,
        vol: &str,
        session: &str,
        expect_last: Option<&str>,
        volume_uuid: Option<&str>,
        format: Option<&str>,
        data: Vec<u8>,
    ) -> Response {
        self.put_request(
            Request::PutSession {
                vol: vol.into(),
                session: session.into(),
                expect_last: expect_last.map(String::from),
                volume_uuid: volume_uuid.map(String::from),
                format: format.map(String::from),
                resume_from: None,
            },
            data,
        )
    }

    /// Any `PutSession` request `req` (e.g. with `resume_from`), then
    /// `data` as its stream.
    pub fn put_request(&mut self, req: Request, data: Vec<u8>) -> Response {
        self.send(&req);
        let w = self.sock().try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut fw = FrameWriter::new(w);
            fw.write_all(&data).and_then(|_| fw.finish().map(drop))
        });
        let resp = self
            .recv()
            .expect("the agent closed the pipe instead of answering");
        // The agent may have stopped reading after an error: a broken pipe
        // on our side is expected then.
        let _ = writer.join().unwrap();
        resp
    }

    /// One raw frame from the agent (the one after a reply that has one).
    pub fn recv_frame(&mut self) -> Option<Vec<u8>> {
        read_frame(&mut self.peer.r, MAX_FRAME).unwrap()
    }

    /// Start a `ReadFiles` stream.
    pub fn start_read(&mut self, vol: &str) {
        self.send(&Request::ReadFiles { vol: vol.into() });
    }

    /// Ask for one path inside a `ReadFiles` stream; the raw reply frame.
    pub fn read_one(&mut self, path: &[u8]) -> Vec<u8> {
        // The agent may refuse the frame after reading only its length and
        // close the socket, so the rest of this write can meet a broken
        // pipe; its answer is still there to read.
        let w = self.peer.writer();
        let _ = write_frame(w, path).and_then(|_| w.flush());
        read_frame(&mut self.peer.r, MAX_FRAME)
            .unwrap()
            .expect("the agent closed the pipe instead of replying")
    }

    /// Close a `ReadFiles` stream; the response that ends it.
    pub fn end_read(&mut self) -> Response {
        write_frame(self.peer.writer(), &[]).unwrap();
        self.recv().expect("no response after the ReadFiles stream")
    }

    /// `Bye`, then the agent must end cleanly.
    pub fn bye(mut self) {
        assert_eq!(self.call(&Request::Bye), Response::Ok);
        self.finish().expect("agent ended with an error after Bye");
    }

    /// Close our end and wait (bounded) for the agent's result.
    pub fn finish(mut self) -> Result<(), String> {
        let _ = self.sock().shutdown(std::net::Shutdown::Both);
        let t = self.thread.take().unwrap();
        let start = Instant::now();
        while !t.is_finished() {
            assert!(start.elapsed() < PATIENCE, "the agent hangs");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join().expect("the agent panicked")
    }
}

/// The message of an error response of `kind`; panics on anything else.
pub fn expect_error(resp: Response, kind: ErrorKind) -> String {
    match resp {
        Response::Error {
            kind: k, message, ..
        } if k == kind => message,
        other => panic!("expected a {kind:?} error, got {other:?}"),
    }
}

/// Assert that `msg` mentions `needle`.
#[track_caller]
pub fn assert_names(msg: &str, needle: &str) {
    assert!(
        msg.contains(needle),
        "message {msg:?} does not name {needle:?}"
    );
}

/// A tar stream written header by header.
pub struct Tar(Vec<u8>);

impl Tar {
    pub fn new() -> Tar {
        Tar(Vec::new())
    }
    /// Append `h` and `data`, padded to the 512-byte block.
    pub fn member(mut self, h: &tar::Header, data: &[u8]) -> Tar {
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.resize(self.0.len() + pad, 0);
        self
    }
    /// A regular file called `name`.
    pub fn file(self, name: &str, data: &[u8]) -> Tar {
        self.raw(name.as_bytes(), tar::EntryType::Regular, data)
    }
    /// A member of any type whose name is the raw bytes `name`.
    pub fn raw(self, name: &[u8], kind: tar::EntryType, data: &[u8]) -> Tar {
        let h = header(name, kind, data.len() as u64, |_| {});
        self.member(&h, data)
    }
    /// With the two zero blocks that end a tar archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.0.resize(self.0.len() + 1024, 0);
        self.0
    }
    /// Without them: the bytes so far.
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

/// A ustar header with raw `name` bytes (no checks), `edit` applied, and the
/// checksum set last.
pub fn header(
    name: &[u8],
    kind: tar::EntryType,
    size: u64,
    edit: impl FnOnce(&mut tar::Header),
) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    edit(&mut h);
    h.set_cksum();
    h
}

/// One PAX extended-header record: `"<len> key=value\n"`, where `len`
/// counts the whole record including its own digits.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    assert_eq!(r.len(), len);
    r
}
