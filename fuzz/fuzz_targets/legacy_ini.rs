//! sparsebak 0.2's key=value metadata: `archive.ini` (`legacy::ini::parse`,
//! `LegacyConfig::parse`) and `volinfo`/`info` (`legacy::meta::parse_kv`).
//! Never a panic; what parses is bounded as documented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::legacy::{ini, meta, Bounds, LegacyConfig};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = ini::parse(text, "archive.ini") {
            for (name, keys) in &s {
                assert!(!name.contains('\n'));
                for (k, _) in keys {
                    assert!(!k.is_empty() && k.len() <= Bounds::LINE);
                }
            }
        }
        let _ = LegacyConfig::parse(text);
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f.flush().unwrap();
    if let Ok(kv) = meta::parse_kv(f.path()) {
        for (k, v) in &kv {
            assert!(!k.is_empty());
            assert!(k.len() + v.len() + 3 <= Bounds::LINE);
        }
    }
});
