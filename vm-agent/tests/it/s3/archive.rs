//! The object-store backend (`sparsebak_agent::s3store`) storing and
//! serving whole sessions through the fault proxy in front of the real
//! gateway: throttling, 5xx and a stalled store during a send are retried and the session
//! commits and reads back equal; uploads cut past the retry budget fail
//! the send, which then does not exist (no commit), while the sessions
//! committed before still read back whole; the same session sent again
//! commits; a commit whose answer was lost after it landed is still one
//! commit. Never a committed session with a missing object.

use super::proxy::{Fault, Proxy};
use super::{bytes, rgw, sha};
use sparsebak_agent::backend::{Backend, Input};
use sparsebak_agent::s3store::conf::StoreConf;
use sparsebak_agent::s3store::S3Archive;
use sparsebak_agent::store::Put;
use sparsebak_common::header::{ArchiveHeader, Compression};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::{chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::{read_frame, write_frame, FILE_DATA};
use sparsebak_common::units::{ByteOffset, ChunkSize};
use sparsebak_common::SessionFormat;
use std::io::{BufReader, Read};
use std::path::PathBuf;

const CHUNK: u64 = 65536;

/// An archive under a prefix of its own, opened through `endpoint`.
fn open(endpoint: &str, prefix: &str, init: bool) -> S3Archive {
    let g = rgw();
    let conf = StoreConf {
        name: "it".into(),
        file: PathBuf::from("/nonexistent/it.conf"),
        endpoint: endpoint.into(),
        bucket: g.bucket.clone(),
        region: g.region.clone(),
        prefix: prefix.into(),
        credentials: None,
        ca_file: None,
        lease_secs: 120,
        pack_bytes: 256 * 1024,
    };
    let cfg = g.client_at(endpoint, &g.bucket, g.creds()).config().clone();
    let mut a = S3Archive::open_with(conf, g.creds(), cfg, "", true).unwrap();
    if init {
        let h = ArchiveHeader::new(
            format!("it-{prefix}"),
            ChunkSize::from_factor(1).unwrap(),
            Compression::default(),
            "2026-12-05T00:00:00Z".into(),
        );
        a.init(&serde_json::to_string(&h).unwrap()).unwrap();
    }
    a
}

/// A session's tar stream: `n` chunk files of 20-60 KiB, manifest, info.
fn session(n: u64, seed: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut t = tar::Builder::new(Vec::new());
    let mut chunks = Vec::new();
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, data).unwrap();
    };
    for i in 0..n {
        let c = bytes(20_000 + (i as usize * 7919) % 40_000, seed * 1000 + i);
        add(&chunk_rel_path(ByteOffset(i * CHUNK)), &c);
        chunks.push(c);
    }
    add("manifest", format!("manifest {seed}\n").as_bytes());
    add("info.json", format!("{{\"seed\":{seed}}}").as_bytes());
    (t.into_inner().unwrap(), chunks)
}

fn vol() -> VolName {
    VolName::new("vol1").unwrap()
}

fn ses(n: u32) -> SessionName {
    SessionName::from_parts([2026, 12, 5, 10, 0, n]).unwrap()
}

fn send(
    a: &S3Archive,
    s: &SessionName,
    last: Option<&SessionName>,
    stream: &[u8],
) -> sparsebak_agent::error::Result<()> {
    let v = vol();
    let p = Put {
        vol: &v,
        session: s,
        expect_last: last,
        volume_uuid: Some("u1"),
        format: SessionFormat::Folders,
        resume_from: None,
    };
    a.put_session(&p, &mut &stream[..])?;
    a.commit(&v, s, r#"{"uuid":"u1"}"#)
}

/// Every chunk file of session `s` read back through `ReadFiles`.
fn read_back(a: &S3Archive, s: &SessionName, n: u64) -> Vec<Vec<u8>> {
    let mut req = Vec::new();
    for i in 0..n {
        write_frame(
            &mut req,
            format!("{s}/{}", chunk_rel_path(ByteOffset(i * CHUNK))).as_bytes(),
        )
        .unwrap();
    }
    write_frame(&mut req, b"").unwrap();
    let boxed: Box<dyn Read> = Box::new(std::io::Cursor::new(req));
    let mut r: Input<'_> = BufReader::new(boxed);
    let mut out = Vec::new();
    let v = vol();
    a.read_files(
        Some(&v),
        &LegacyVolName::new("vol1").unwrap(),
        &mut r,
        &mut out,
    )
    .unwrap();
    let mut rd = &out[..];
    (0..n)
        .map(|_| {
            let f = read_frame(&mut rd, 1 << 24).unwrap().unwrap();
            assert_eq!(f[0], FILE_DATA, "{}", String::from_utf8_lossy(&f));
            f[1..].to_vec()
        })
        .collect()
}

fn sums(v: &[Vec<u8>]) -> Vec<String> {
    v.iter().map(|c| sha(c)).collect()
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn sends_survive_throttling_and_cut_uploads_never_commit() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let prefix = format!("it/archive/{}/", std::process::id());
    let a = open(&p.endpoint(), &prefix, true);
    // 1. Throttled, failing and stalled requests along the whole send:
    // retried (a stall past the client's 2 s timeout too).
    let (t1, c1) = session(12, 1);
    for f in [
        Fault::Status(503, "SlowDown"),
        Fault::Status(500, "InternalError"),
        Fault::Stall(std::time::Duration::from_secs(3)),
        Fault::CutMidUpload,
        Fault::Status(503, "SlowDown"),
        Fault::CutAfterForward,
    ] {
        p.script(&[f, Fault::Pass]);
    }
    send(&a, &ses(1), None, &t1).unwrap();
    assert_eq!(sums(&read_back(&a, &ses(1), 12)), sums(&c1));
    // 2. Every upload cut, past the retry budget: the send fails and its
    // session does not exist; session 1 still reads back whole.
    let (t2, c2) = session(30, 2);
    p.script(&[Fault::Pass]);
    p.script(&[Fault::CutMidUpload; 5]);
    let e = send(&a, &ses(2), Some(&ses(1)), &t2).unwrap_err();
    assert!(
        e.message.contains("gave up after 5 attempts"),
        "{}",
        e.message
    );
    let (committed, _) = a.list_sessions(&vol()).unwrap();
    assert_eq!(committed, vec![ses(1)]);
    let v = vol();
    assert!(
        a.commit(&v, &ses(2), "{}").is_err(),
        "a failed send must not commit"
    );
    assert_eq!(sums(&read_back(&a, &ses(1), 12)), sums(&c1));
    // 3. The same session again, cut once mid-upload and once after the
    // commit landed (its answer lost): one commit, every object there.
    p.script(&[Fault::Pass, Fault::CutMidUpload]);
    send(&a, &ses(2), Some(&ses(1)), &t2).unwrap();
    let (committed, _) = a.list_sessions(&vol()).unwrap();
    assert_eq!(committed, vec![ses(1), ses(2)]);
    assert_eq!(sums(&read_back(&a, &ses(2), 30)), sums(&c2));
    // 4. A fresh reader (no cache), straight to the gateway, agrees.
    drop(a);
    let b = open(&g.endpoint, &prefix, false);
    assert_eq!(sums(&read_back(&b, &ses(1), 12)), sums(&c1));
    assert_eq!(sums(&read_back(&b, &ses(2), 30)), sums(&c2));
}
