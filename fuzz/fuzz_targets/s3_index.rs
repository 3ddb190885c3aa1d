//! A session generation's chunk index in an object-store archive
//! (`sparsebak_agent::s3store::layout::Index`, docs/FORMAT.md §21.1), as the
//! agent reads `index-<gen>` and `held` objects from a store it does not
//! trust. Input: a byte choosing the largest stored chunk, then the index.
//! Never a panic; an accepted index re-encodes to exactly its bytes, names
//! packs by 32 lowercase hex digits, has strictly ascending addresses, pack
//! numbers in range, lengths within the limit and no entry past u64; every
//! entry is found by its address, and a coalesced read from it ends after
//! it without overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::s3store::layout::Index;

/// Largest stored chunk (the header's `max_stored`), chosen by the input.
const MAX_CHUNK: [u64; 5] = [0, 4096, 65536 + 4096, (16 << 20) + 4096, u32::MAX as u64];

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else {
        return;
    };
    let max = MAX_CHUNK[k as usize % MAX_CHUNK.len()];
    let Ok(ix) = Index::decode(body, max) else {
        return;
    };
    assert_eq!(
        ix.encode(),
        body,
        "an accepted index does not re-encode to itself"
    );
    for p in &ix.packs {
        assert!(p.len() == 32 && p.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    }
    for (i, l) in ix.locs.iter().enumerate() {
        assert!((l.pack as usize) < ix.packs.len());
        assert!(u64::from(l.len) <= max);
        let end = l
            .offset
            .checked_add(u64::from(l.len))
            .expect("an entry past u64");
        assert!(i == 0 || ix.locs[i - 1].addr < l.addr);
        assert_eq!(ix.find(l.addr), Some(i));
        for window in [0, 64, 4 << 20, u64::MAX] {
            let run = ix.run_end(i, window);
            assert!(run >= end);
            assert!(run - l.offset <= window.max(u64::from(l.len)));
        }
    }
});
