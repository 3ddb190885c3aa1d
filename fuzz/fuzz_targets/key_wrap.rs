//! The archive header of format 2 and its wrapped key as read from the
//! destination (`ArchiveHeader::parse`, `crypto::wrap::check`/`unwrap`):
//! never a panic; parameters outside the limits are refused before any
//! Argon2id work (unwrap runs only for the cheapest ones here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::crypto::wrap::{check, unwrap};
use sparsebak_common::header::{ArchiveHeader, KeyWrap};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ArchiveHeader::parse(data) {
        assert!(h.format_version == 1 || h.key.is_some());
    }
    let Ok(w) = serde_json::from_slice::<KeyWrap>(data) else {
        return;
    };
    if let Ok(c) = check(&w) {
        if c.memory_kib <= 256 && c.iterations <= 2 && c.parallelism <= 2 {
            let _ = unwrap(&w, b"passphrase", "fuzz");
        }
    }
});
