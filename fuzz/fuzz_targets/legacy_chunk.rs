//! The sparsebak 0.2 chunk decoder (`sparsebak::legacy::chunk::decode`):
//! zlib or gzip streams from an old archive. Never a panic, never more than
//! `max` bytes out, and a valid stream of at most `max` bytes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::legacy::chunk::{decode, LegacyChunkError};
fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = u64::from(u16::from_le_bytes([data[0], data[1]])) * 16;
    let file = &data[2..];
    if let Ok(out) = decode(file, max) {
        assert!(out.len() as u64 <= max);
    }
    // A gzip-wrapped and a zlib-wrapped copy of the payload itself.
    let mut z = flate2_like::zlib(file);
    let mut g = flate2_like::gzip(file);
    for f in [&mut z, &mut g] {
        match decode(f, max) {
            Ok(out) => assert_eq!(out, file),
            Err(LegacyChunkError::TooLong(m)) => assert!(file.len() as u64 > m),
            Err(e) => panic!("a valid stream was refused: {e}"),
        }
    }
});

/// Encoders for the round trip (0.2 wrote zlib, older versions gzip).
mod flate2_like {
    use std::io::Write;
    pub fn zlib(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }
    pub fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }
}
