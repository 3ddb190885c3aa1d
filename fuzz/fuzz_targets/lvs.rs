//! `lvs --reportformat json` output (`sparsebak::lvm::cli::parse_lvs`) and
//! `thin_delta -V` (`parse_version`): tool output, treated as untrusted like
//! thin_delta's XML. Never a panic; every volume is filed under its name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::lvm::cli::{parse_lvs, parse_version};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = parse_lvs(data) {
        for (name, lv) in &s {
            assert_eq!(name, &lv.name);
        }
    }
    if let Ok(t) = std::str::from_utf8(data) {
        let _ = parse_version(t);
    }
});
