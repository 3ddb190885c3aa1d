//! dom0's reader of agent replies (`sparsebak::dest::AgentConn`) over
//! arbitrary bytes, as a hostile backup VM or ssh host could send them:
//! Hello, Open, ListSessions, a ReadFiles stream, ReadMeta pieces and
//! SessionDigests pages (strictly ascending, bounded) and ResumeCheck
//! pieces (whole records, at most a piece).
//! Never a panic or a hang; a file reply is at most a frame, and a metadata
//! piece at most `META_PIECE` bytes and inside the size it announces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::dest::client::FileReply;
use sparsebak::dest::AgentConn;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{Request, MAX_FRAME, META_PIECE, RESUME_PIECE, RESUME_RECORD};
use std::io::{sink, Cursor};

fn pipes(data: &[u8]) -> (Box<Cursor<Vec<u8>>>, Box<std::io::Sink>) {
    (Box::new(Cursor::new(data.to_vec())), Box::new(sink()))
}

fuzz_target!(|data: &[u8]| {
    // Without Hello: the plain request/reply calls.
    let (r, w) = pipes(data);
    let vol = VolName::new("vm-a").unwrap();
    let mut c = AgentConn::from_pipes(r, w, "fuzz".into());
    let _ = c.open("/m/x", "/m", true);
    let _ = c.list_sessions(&vol);
    let items = (0..3u64).map(|i| (Some(format!("S_20260101-000000/000000000/x{i:016x}")), i));
    let _ = c.read_files(vol.clone().into(), items, |_, reply| {
        if let Some(FileReply::Data(d)) = reply {
            assert!(d.len() < MAX_FRAME);
        }
        Ok(())
    });
    let _ = c.request(&Request::ListVolumes);
    // After Hello (which may announce read_meta): metadata pieces.
    let (r, w) = pipes(data);
    if let Ok(mut c) = sparsebak::fuzzing::connected(r, w) {
        let mut offset = 0;
        for _ in 0..4 {
            let Ok(Ok(p)) = c.read_meta(&vol, "volume.json", offset) else {
                break;
            };
            assert!(p.data.len() <= META_PIECE);
            assert!(offset + p.data.len() as u64 <= p.size);
            offset += p.data.len() as u64;
        }
    }
    // After Hello (which may announce session_digests): digest pages.
    let (r, w) = pipes(data);
    if let Ok(mut c) = sparsebak::fuzzing::connected(r, w) {
        if let Ok(d) = c.session_digests(&vol) {
            assert!(d.sessions.windows(2).all(|w| w[0].name < w[1].name));
            assert!(d.sessions.len() <= 100_000 + sparsebak_common::proto::DIGEST_PAGE);
        }
    }
    // After Hello: what an unfinished session holds, piece by piece.
    let (r, w) = pipes(data);
    if let Ok(mut c) = sparsebak::fuzzing::connected(r, w) {
        let s = SessionName::new("S_20260101-000000").unwrap();
        for _ in 0..4 {
            let Ok(Ok(p)) = c.resume_check(&vol, &s, None) else {
                break;
            };
            assert!(p.records.len().is_multiple_of(RESUME_RECORD));
            assert!(p.records.len() <= RESUME_PIECE * RESUME_RECORD);
        }
    }
});
