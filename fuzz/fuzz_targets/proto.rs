//! The pipe protocol (`sparsebak_common::proto`) over arbitrary bytes, as
//! either side reads what the other sent: frames, control messages
//! (`Request` for the agent, `Response` for dom0's reply reader) and data
//! streams. Never a panic, no frame over its limit, and every message that
//! parses survives `send_msg` → `recv_msg` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_common::proto::{
    read_frame, recv_msg, send_msg, write_frame, FrameReader, RawRequest, Request, Response,
    MAX_MESSAGE,
};
use std::io::Read;

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    msg: &T,
) {
    let mut buf = Vec::new();
    send_msg(&mut buf, msg).unwrap();
    let back: T = recv_msg(&mut &buf[..]).unwrap().unwrap();
    assert_eq!(&back, msg);
}

fuzz_target!(|data: &[u8]| {
    // Frames with a small limit.
    let mut r = data;
    while let Ok(Some(f)) = read_frame(&mut r, 4096) {
        assert!(f.len() <= 4096);
        let mut out = Vec::new();
        write_frame(&mut out, &f).unwrap();
        assert_eq!(read_frame(&mut &out[..], 4096).unwrap().unwrap(), f);
    }
    // Control messages, both directions; a request also in its wire form,
    // which decodes to the typed one exactly when its names are valid.
    let mut r = data;
    while let Ok(Some(q)) = recv_msg::<_, Request>(&mut r) {
        round_trip(&q);
    }
    let mut r = data;
    while let Ok(Some(q)) = recv_msg::<_, RawRequest>(&mut r) {
        round_trip(&q);
        if let Ok(t) = Request::try_from(q) {
            round_trip(&t);
        }
    }
    let mut r = data;
    while let Ok(Some(a)) = recv_msg::<_, Response>(&mut r) {
        round_trip(&a);
    }
    // The bytes as one message body.
    if data.len() <= MAX_MESSAGE {
        if let Ok(q) = serde_json::from_slice::<Request>(data) {
            round_trip(&q);
        }
        if let Ok(a) = serde_json::from_slice::<Response>(data) {
            round_trip(&a);
        }
    }
    // A data stream, read in small pieces.
    let mut s = FrameReader::new(data);
    let mut piece = [0u8; 7];
    let mut total = 0;
    while let Ok(n) = s.read(&mut piece) {
        if n == 0 {
            assert!(s.is_done());
            break;
        }
        total += n;
        assert!(total <= data.len());
    }
});
