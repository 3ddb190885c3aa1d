//! Fixtures for the agent's prune tests: the real `sparsebak-agent` binary
//! (so a test hook's `abort()` kills only the agent), spoken to over its
//! stdin/stdout through the shared [`Peer`], against an archive in a
//! [`Sandbox`] (a temp dir with a canary outside the archive).
#![allow(dead_code)]

use sparsebak_common::header::{ArchiveHeader, Compression};
use sparsebak_common::names::chunk_rel_path;
use sparsebak_common::plan::{end_line, Move, PlanHead};
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{
    read_frame, recv_msg, send_msg, write_frame, FrameWriter, RawRequest as Request, Response,
    MAX_FRAME,
};
use sparsebak_common::units::{ByteOffset, ChunkSize};
use sparsebak_testing::peer::Peer;
use sparsebak_testing::sandbox::Sandbox;
use sparsebak_testing::tree::{self, Kind};
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub const VOL: &str = "vol1";
pub const UUID: &str = "5e55-prune-test";
pub const S1: &str = "S_20260101-000000";
pub const S2: &str = "S_20260102-000000";
pub const S3: &str = "S_20260103-000000";
pub const S4: &str = "S_20260104-000000";
pub const K: u64 = 65536;

pub use sparsebak_testing::mounts::mount_point_of;

pub struct Agent {
    child: Child,
    peer: Peer<BufReader<ChildStdout>, ChildStdin>,
}

impl Agent {
    /// Start the agent with extra environment, say hello, open `dest`.
    pub fn start(dest: &Path, write: bool, env: &[(&str, String)]) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sparsebak-agent"));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the agent");
        let w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        let mut a = Agent {
            child,
            peer: Peer::new(r, w),
        };
        let hello = a.peer.hello();
        assert!(matches!(hello, Response::Hello { .. }), "{hello:?}");
        let mp = mount_point_of(dest);
        let opened = a
            .peer
            .open(dest.to_str().unwrap(), mp.to_str().unwrap(), write);
        assert!(matches!(opened, Response::Opened { .. }), "{opened:?}");
        a
    }

    /// Send a request; `None` if the agent died before answering.
    pub fn try_call(&mut self, req: &Request) -> Option<Response> {
        self.peer.try_call(req)
    }

    pub fn call(&mut self, req: &Request) -> Response {
        self.try_call(req)
            .unwrap_or_else(|| panic!("the agent died on {req:?}"))
    }

    pub fn ok(&mut self, req: &Request) {
        assert_eq!(self.call(req), Response::Ok, "{req:?}");
    }

    /// Store and commit a session of chunk files `(addr, bytes)`.
    pub fn put_session(&mut self, s: &str, prev: Option<&str>, chunks: &[(u64, Vec<u8>)]) {
        send_msg(
            self.peer.writer(),
            &Request::PutSession {
                vol: VOL.into(),
                session: s.into(),
                expect_last: prev.map(Into::into),
                volume_uuid: None,
                format: None,
                resume_from: None,
            },
        )
        .unwrap();
        let mut tar = tar::Builder::new(FrameWriter::new(self.peer.writer()));
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            tar.append(&h, data).unwrap();
        };
        for (a, d) in chunks {
            add(&chunk_rel_path(ByteOffset(*a)), d);
        }
        add("manifest", format!("manifest of {s}\n").as_bytes());
        add("info.json", format!("{{\"name\":\"{s}\"}}").as_bytes());
        let fw = tar.into_inner().unwrap();
        fw.finish().unwrap();
        let r: Response = recv_msg(&mut self.peer.r).unwrap().unwrap();
        assert!(matches!(r, Response::Stored { .. }), "{r:?}");
        self.ok(&Request::Commit {
            vol: VOL.into(),
            session: s.into(),
            volume_info: format!("{{\"last\":\"{s}\"}}"),
        });
    }

    /// Upload a plan's three files.
    pub fn upload(&mut self, vol: &str, plan: &str, manifest: &str, info: &str) -> Response {
        for (file, data) in [("plan", plan), ("manifest", manifest), ("info.json", info)] {
            let r = self.call(&Request::PrunePart {
                vol: vol.into(),
                file: file.into(),
                offset: 0,
                data: data.into(),
            });
            if r != Response::Ok {
                return r;
            }
        }
        Response::Ok
    }

    pub fn prune(&mut self, target: &str, pruned: &[&str]) -> Option<Response> {
        self.try_call(&Request::Prune {
            vol: VOL.into(),
            target: target.into(),
            pruned: pruned.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Ask for one file; the reply frame (status byte first), or the
    /// agent's error response if it refused the whole request.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, Response> {
        let w = self.peer.writer();
        send_msg(w, &Request::ReadFiles { vol: VOL.into() }).unwrap();
        // An agent that refuses the request answers and exits at once, so
        // the path frames may meet a closed pipe.
        let _ = write_frame(w, path.as_bytes())
            .and_then(|_| write_frame(w, &[]))
            .and_then(|_| w.flush());
        let frame = read_frame(&mut self.peer.r, MAX_FRAME).unwrap().unwrap();
        if let Ok(r @ Response::Error { .. }) = serde_json::from_slice::<Response>(&frame) {
            return Err(r);
        }
        let end: Response = recv_msg(&mut self.peer.r).unwrap().unwrap();
        assert_eq!(end, Response::Ok);
        Ok(frame)
    }

    /// Wait for the agent to exit (after a test hook aborted it).
    pub fn wait_dead(mut self) -> std::process::ExitStatus {
        self.peer.close();
        self.child.wait().unwrap()
    }

    pub fn bye(mut self) {
        self.ok(&Request::Bye);
        self.peer.close();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A [`Sandbox`] holding the archive; its `root`, `dest` and `outside` are
/// reached through `Deref`.
pub struct Fixture {
    pub sandbox: Sandbox,
}

impl std::ops::Deref for Fixture {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// Chunk bytes that say where they came from.
pub fn chunk(s: &str, addr: u64) -> Vec<u8> {
    format!("chunk {addr:x} of {s}").into_bytes()
}

impl Fixture {
    /// An archive holding S1..S4 of VOL:
    /// S1 {0,1,2,3}, S2 {1,2,4}, S3 {2,5}, S4 {0}.
    pub fn new() -> Fixture {
        let fx = Fixture {
            sandbox: Sandbox::new(),
        };
        let mut a = fx.agent(true, &[]);
        let h = ArchiveHeader::new(
            UUID.into(),
            ChunkSize::from_factor(1).unwrap(),
            Compression::default(),
            "2026-01-01T00:00:00Z".into(),
        );
        a.ok(&Request::InitArchive {
            header: serde_json::to_string(&h).unwrap(),
        });
        let layout: [(&str, &[u64]); 4] = [
            (S1, &[0, 1, 2, 3]),
            (S2, &[1, 2, 4]),
            (S3, &[2, 5]),
            (S4, &[0]),
        ];
        let mut prev = None;
        for (s, addrs) in layout {
            let chunks: Vec<(u64, Vec<u8>)> =
                addrs.iter().map(|i| (i * K, chunk(s, i * K))).collect();
            a.put_session(s, prev, &chunks);
            prev = Some(s);
        }
        a.bye();
        fx
    }

    pub fn agent(&self, write: bool, env: &[(&str, String)]) -> Agent {
        Agent::start(&self.dest, write, env)
    }

    pub fn vol_dir(&self) -> PathBuf {
        self.dest.join("sparsebak/volumes").join(VOL)
    }

    pub fn file(&self, session: &str, addr: u64) -> PathBuf {
        self.vol_dir()
            .join(session)
            .join(chunk_rel_path(ByteOffset(addr)))
    }

    /// Everything under the temp root except the lock file: path → what it is.
    pub fn tree(&self) -> BTreeMap<String, String> {
        let root = self.root.path();
        // The archive's `.lock`, never a top-level name of the sandbox.
        let lock =
            |p: &Path| p.parent() != Some(root) && p.file_name().is_some_and(|n| n == ".lock");
        tree::walk(root, lock)
            .into_iter()
            .map(|e| {
                let what = match &e.kind {
                    Kind::Symlink(target) => format!("-> {}", target.display()),
                    Kind::Dir => "dir".into(),
                    _ => String::from_utf8_lossy(&e.read()).into_owned(),
                };
                (e.rel.to_string_lossy().into_owned(), what)
            })
            .collect()
    }
}

/// Plan text for `pruned` into `target` with `moves` (pruned index, addr).
pub fn plan_text(vol: &str, target: &str, pruned: &[&str], moves: &[(usize, u64)]) -> String {
    let head = PlanHead {
        vol: sparsebak_common::names::VolName::new(vol).unwrap(),
        target: sparsebak_common::names::SessionName::new(target).unwrap(),
        pruned: pruned
            .iter()
            .map(|s| sparsebak_common::names::SessionName::new(s).unwrap())
            .collect(),
    };
    let mut t = head.to_text();
    for &(session, a) in moves {
        t.push_str(&head.move_line(&Move {
            session,
            addr: ByteOffset(a),
        }));
    }
    t + &end_line(moves.len() as u64)
}

/// The standard prune: S2 into S3. S2's chunk 2 is shadowed by S3's and
/// its chunk 4 lies beyond S3's size, so only chunk 1 moves.
pub fn standard_plan() -> (String, String, String) {
    (
        plan_text(VOL, S3, &[S2], &[(0, K)]),
        "merged manifest of S3\n".into(),
        "{\"name\":\"S_20260103-000000\",\"merged\":true}".into(),
    )
}
