//! Unit tests of the agent client over scripted replies.

use super::*;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{
    write_frame, ErrorKind, FEATURE_READ_META, META_PIECE, PROTOCOL_VERSION,
};

fn vol() -> VolName {
    VolName::new("vol").unwrap()
}

fn conn_replying(frames: &[Vec<u8>]) -> AgentConn {
    let mut input = Vec::new();
    for f in frames {
        write_frame(&mut input, f).unwrap();
    }
    AgentConn::from_pipes(
        Box::new(std::io::Cursor::new(input)),
        Box::new(std::io::sink()),
        "test".into(),
    )
}

fn hello_frame(features: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&Response::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.3.0".into(),
        features: features.iter().map(|f| f.to_string()).collect(),
    })
    .unwrap()
}

fn piece_frames(size: u64, data: &[u8]) -> Vec<Vec<u8>> {
    let head = serde_json::to_vec(&Response::MetaPiece {
        size,
        len: data.len() as u64,
    })
    .unwrap();
    vec![head, data.to_vec()]
}

#[test]
fn an_agent_without_read_meta_is_too_old() {
    let mut c = conn_replying(&[hello_frame(&[])]);
    c.hello().unwrap();
    let e = c.read_meta(&vol(), "volume.json", 0).unwrap_err();
    assert!(e.to_string().contains("is too old"), "{e}");
    assert!(e.to_string().contains("sparsebak-agent 0.3.0"), "{e}");
}

#[test]
fn a_piece_is_read_and_checked() {
    let mut frames = vec![hello_frame(&[FEATURE_READ_META])];
    frames.extend(piece_frames(10, b"abcd"));
    let mut c = conn_replying(&frames);
    c.hello().unwrap();
    let p = c
        .read_meta(&vol(), "S_20260101-000000/manifest", 6)
        .unwrap()
        .unwrap();
    assert_eq!((p.size, p.data.as_slice()), (10, &b"abcd"[..]));
}

#[test]
fn oversized_or_inconsistent_pieces_are_refused() {
    let big = vec![b'x'; META_PIECE + 1];
    let cases: Vec<(u64, Vec<Vec<u8>>)> = vec![
        // More than one piece may carry.
        (0, piece_frames(big.len() as u64, &big)),
        // Past the announced size.
        (8, piece_frames(10, b"abcd")),
        // A frame of another length than announced.
        (
            0,
            vec![
                serde_json::to_vec(&Response::MetaPiece { size: 10, len: 4 }).unwrap(),
                b"abc".to_vec(),
            ],
        ),
    ];
    for (offset, replies) in cases {
        let mut frames = vec![hello_frame(&[FEATURE_READ_META])];
        frames.extend(replies);
        let mut c = conn_replying(&frames);
        c.hello().unwrap();
        let e = c
            .read_meta(&vol(), "S_20260101-000000/manifest", offset)
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("S_20260101-000000/manifest of volume vol"),
            "{m}"
        );
    }
}

fn read_one(c: &mut AgentConn) -> Result<()> {
    c.read_files(
        vol().into(),
        std::iter::once((Some("S_x/000000000/x0".into()), ())),
        |_, _| Ok(()),
    )
}

#[test]
fn an_error_in_place_of_a_file_reply_is_the_agents_error() {
    let err = serde_json::to_vec(&Response::Error {
        kind: ErrorKind::Locked,
        message: "volume vol has an unfinished prune".into(),
        damaged: None,
    })
    .unwrap();
    let e = read_one(&mut conn_replying(&[err])).unwrap_err();
    let d = e.downcast_ref::<DestError>().expect("a DestError");
    assert_eq!(
        (d.kind, d.message.as_str()),
        (ErrorKind::Locked, "volume vol has an unfinished prune")
    );
}

#[test]
fn garbage_in_place_of_a_file_reply_is_malformed() {
    for f in [b"{not json".to_vec(), vec![9, 1, 2]] {
        let e = read_one(&mut conn_replying(&[f])).unwrap_err();
        assert_eq!(e.to_string(), "the agent sent a malformed file reply");
    }
}

#[test]
fn a_closed_pipe_in_a_read_is_a_lost_link() {
    let e = read_one(&mut conn_replying(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "connection to the agent at test was lost (the agent closed the pipe in the middle of a read): the pipe closed"
    );
}

/// dom0 never runs more than READ_WINDOW requests ahead of the agent's
/// replies (an agent whose reader went away must not be left with a queue
/// of requests: qrexec keeps its stdout open while its stdin holds unread
/// data, tests/suite-qrexec-findings.sh). An agent that answers nothing:
/// the request writer pulls at most READ_WINDOW + 2 items (the window,
/// the one being awaited, the one waiting for room), then waits.
#[test]
fn at_most_read_window_requests_are_in_flight() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (r, w) = std::io::pipe().unwrap();
    let mut c = AgentConn::from_pipes(Box::new(r), Box::new(std::io::sink()), "test".into());
    let pulled = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let items = (0..10 * READ_WINDOW).map(|i| {
            pulled.fetch_add(1, Ordering::SeqCst);
            (Some(format!("S_x/000000000/x{i}")), ())
        });
        let reader = sc.spawn(move || c.read_files(vol().into(), items, |_, _| Ok(())));
        // Until the writer has filled the window and then stood still
        // for 300 ms (a loaded machine may take a while to get there).
        let mut n = 0;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let now = pulled.load(Ordering::SeqCst);
            if now == n && n >= READ_WINDOW {
                break;
            }
            n = now;
        }
        assert!(
            (READ_WINDOW..=READ_WINDOW + 2).contains(&n),
            "{n} requests written ahead of the replies"
        );
        drop(w); // the agent goes away
        assert!(reader.join().unwrap().is_err());
    });
}
