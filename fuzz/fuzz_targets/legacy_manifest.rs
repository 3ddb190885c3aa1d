//! sparsebak 0.2 manifests (`sparsebak::legacy::manifest`): single lines
//! through `LegacyEntry::parse`, whole files through `LegacyManifestReader`
//! with a chunk size taken from the input. Never a panic; accepted entries
//! are ascending and chunk-aligned, and a line prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::legacy::manifest::{LegacyEntry, LegacyManifestReader, LegacyRef};
use sparsebak_common::units::ChunkSize;
use std::io::Write;

fn to_line(e: &LegacyEntry) -> String {
    match e.chunk {
        LegacyRef::Zero => format!("0 x{:016x}", e.addr.0),
        LegacyRef::Data(h) => format!("{} x{:016x}", hex::encode(h), e.addr.0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&factor, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        for line in text.split('\n') {
            if let Ok(e) = LegacyEntry::parse(line) {
                assert_eq!(to_line(&e), line);
            }
        }
    }
    let Ok(cs) = ChunkSize::from_factor(u64::from(factor % 8) + 1) else {
        return;
    };
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(rest).unwrap();
    f.flush().unwrap();
    let mut last = None;
    for e in LegacyManifestReader::open(f.path(), cs).unwrap() {
        let Ok(e) = e else { break };
        assert_eq!(e.addr.0 % cs.bytes(), 0);
        assert!(last.is_none_or(|l| e.addr > l));
        last = Some(e.addr);
    }
});
