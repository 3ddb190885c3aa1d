//! `thin_dump --dev-id` XML (`sparsebak::lvm::thinmap::parse`), a tool's
//! output treated as untrusted: never a panic, and a map, when there is one,
//! lies within the volume and counts what it marks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::lvm::thinmap::{parse, Parsed};
use sparsebak_common::units::Bytes;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the volume size (up to 255 MiB), the rest is XML.
    let Some((&size, xml)) = data.split_first() else {
        return;
    };
    let size = Bytes(u64::from(size) << 20);
    if let Ok(Parsed::Map(m)) = parse(xml, 3, size) {
        assert!(m.block_bytes() > 0);
        assert!(m.blocks() == size.0.div_ceil(m.block_bytes()));
        let counted = (0..m.blocks()).filter(|&b| m.is_mapped(b)).count() as u64;
        assert_eq!(counted, m.mapped());
        let mut b = 0;
        while b < m.blocks() {
            let (_, end) = m.run_at(b);
            assert!(end > b && end <= m.blocks());
            b = end;
        }
    }
});
