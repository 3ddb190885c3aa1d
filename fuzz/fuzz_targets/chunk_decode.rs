//! dom0's chunk file decoder (`sparsebak::chunk::decode`) over files read
//! back from the destination: never a panic, never more than the expected
//! length out, and `decode(encode(x)) == x` for every codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::chunk::{decode, encode};
use sparsebak_common::header::Compression;

/// Largest expected length tried: big enough for a bomb to matter, small
/// enough to keep runs fast.
const MAX_EXPECTED: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let expected = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize % (MAX_EXPECTED + 1);
    let file = &data[4..];
    // As found on the destination, and with its declared length forced to
    // the expected one so the decoders are reached.
    if let Ok(out) = decode(file, expected) {
        assert_eq!(out.len(), expected);
    }
    if file.len() >= 12 {
        let mut f = file.to_vec();
        f[..8].copy_from_slice(b"SBC\x01\x00\x00\x00\x00");
        f[4] = file[4] % 3;
        f[8..12].copy_from_slice(&(expected as u32).to_le_bytes());
        if let Ok(out) = decode(&f, expected) {
            assert_eq!(out.len(), expected);
        }
    }
    // Round trip of the input itself.
    let c: Compression = ["zstd:1", "zstd:3", "zlib:1", "zlib:6"][data[0] as usize % 4]
        .parse()
        .unwrap();
    let enc = encode(file, c);
    assert_eq!(decode(&enc, file.len()).unwrap(), file);
});
