//! Format 2 chunk files (`ChunkCodec::decode` with a sealing key) as read
//! back from the destination: never a panic, never output that was not
//! authenticated, never more than the expected length; a sealed file opens
//! only at its own address, and any single-byte change is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::chunk::ChunkCodec;
use sparsebak::crypto::{ArchiveKeys, MasterKey};
use sparsebak_common::header::Compression;
use sparsebak_common::units::ByteOffset;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let keys = Arc::new(ArchiveKeys::derive(&MasterKey::from_bytes([7; 32]), "fuzz"));
    let c = ChunkCodec::sealed(Compression::default(), keys, "vol");
    let expected = u16::from_le_bytes([data[0], data[1]]) as usize;
    let at = u16::from_le_bytes([data[2], data[3]]) as usize;
    let file = &data[4..];
    // Hostile bytes: must never decode (no key), never panic.
    assert!(c.decode(file, ByteOffset(0), expected).is_err());
    // A real sealed file of the input, then one byte changed.
    let addr = ByteOffset(65536);
    let f = c.encode(file, addr);
    assert_eq!(c.decode(&f, addr, file.len()).unwrap(), file);
    assert!(c.decode(&f, ByteOffset(0), file.len()).is_err());
    let mut g = f.clone();
    g[at % f.len()] ^= data[4] | 1;
    assert!(c.decode(&g, addr, file.len()).is_err());
    g.truncate(at % f.len());
    assert!(c.decode(&g, addr, file.len()).is_err());
});
