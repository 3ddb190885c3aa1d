//! A qube settings record as it comes back from the archive
//! (`sparsebak::qubes::record::QubeRecord::parse`, docs/FORMAT.md §16):
//! never a panic; a record accepted re-encodes within the size bound and
//! parses back equal, and every value it holds passes the per-value check
//! the restore relies on (one argument: no control character, no leading
//! '-').
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::qubes::record::{check_value, QubeRecord, MAX_RECORD};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = QubeRecord::parse(data) {
        let bytes = r.encode().expect("an accepted record encodes");
        assert!(bytes.len() as u64 <= MAX_RECORD);
        assert_eq!(QubeRecord::parse(&bytes).expect("re-parses"), r);
        for (k, v) in r.properties.iter().chain(&r.features) {
            check_value(k, v).expect("checked value");
        }
    }
});
