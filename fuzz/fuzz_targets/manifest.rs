//! Our session manifest (`sparsebak::manifest`): single lines through
//! `Entry::parse`, whole files through `ManifestReader` (as arch-recover
//! reads a manifest fetched from the destination). Never a panic; every
//! parsed entry prints back to the very line it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::manifest::{Entry, ManifestReader};
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.split('\n') {
            if let Ok(e) = Entry::parse(line) {
                assert_eq!(e.to_line(), format!("{line}\n"));
                assert_eq!(Entry::parse(line.trim_end()), Ok(e));
            }
        }
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(data).unwrap();
    f.flush().unwrap();
    let mut last = None;
    for e in ManifestReader::open(f.path()).unwrap().take(100_000) {
        let Ok(e) = e else { break };
        assert!(
            last.is_none_or(|l| e.addr > l),
            "out of order entry accepted"
        );
        last = Some(e.addr);
    }
});
