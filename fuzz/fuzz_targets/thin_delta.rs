//! `thin_delta -m` XML (`sparsebak::lvm::delta::parse`), a tool's output
//! treated as untrusted: never a panic, and every run reported fits in u64
//! bytes at the reported block size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::lvm::delta::parse;

fuzz_target!(|data: &[u8]| {
    let mut runs = 0u64;
    let res = parse(data, 2, 3, |dbs, run| {
        assert!(dbs.0 > 0 && dbs.0 <= 1 << 30);
        let end = run
            .begin
            .0
            .checked_add(run.length)
            .expect("run end overflows");
        end.checked_mul(dbs.bytes()).expect("run bytes overflow");
        runs += 1;
        Ok(())
    });
    if let Ok(dbs) = res {
        assert!(dbs.0 > 0);
    }
});
