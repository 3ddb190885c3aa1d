//! Format 2 sealed metadata files (`crypto::sealed::open_bytes`) as read
//! back from the destination: never a panic, output bounded by the limit
//! and only from authenticated segments; a sealed file with a changed byte,
//! or cut short, never opens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::crypto::sealed::{open_bytes, seal_bytes, MetaKind, Place};
use sparsebak::crypto::{ArchiveKeys, MasterKey};

const P: Place<'static> = Place {
    kind: MetaKind::Manifest,
    context: "vfuzz/S_20260101-000000",
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let k = ArchiveKeys::derive(&MasterKey::from_bytes([7; 32]), "fuzz");
    let at = u16::from_le_bytes([data[0], data[1]]) as usize;
    let body = &data[2..];
    // Hostile text: no key, so it never opens.
    assert!(open_bytes(&k, P, body, 1 << 20, "fuzz").is_err());
    let s = seal_bytes(&k, P, body).into_bytes();
    assert_eq!(open_bytes(&k, P, &s, body.len() as u64, "fuzz").unwrap(), body);
    let mut t = s.clone();
    let i = at % t.len();
    t[i] = t[i].wrapping_add(data[2] | 1);
    assert!(open_bytes(&k, P, &t, 1 << 20, "fuzz").is_err());
    t.truncate(i);
    assert!(open_bytes(&k, P, &t, 1 << 20, "fuzz").is_err());
});
