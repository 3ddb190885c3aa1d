//! arch-recover's checks of metadata fetched from the destination
//! (`sparsebak::recover::check`): `volume.json`, `info.json` (as the first
//! session and as the one after a valid session) and the session list.
//! Never a panic; what is accepted satisfies the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak::local_meta::SessionInfo;
use sparsebak::recover::check::{
    manifest_bound, session_info, session_list, volume_state, MAX_VOLSIZE,
};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::ChunkSize;

fn prev() -> SessionInfo {
    serde_json::from_str(
        r#"{"name":"S_20260101-000000","sequence":1,"previous":null,"volsize":1048576,
        "chunk_size":65536,"created_utc":"2026-01-01T00:00:00Z","format":"folders",
        "chunks":16,"stored_chunks":3,"stored_bytes":1000,
        "manifest_sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
    )
    .unwrap()
}

fuzz_target!(|data: &[u8]| {
    let vol = VolName::new("vm-work-private").unwrap();
    let cs = ChunkSize::from_factor(1).unwrap();
    let p = prev();
    let name = SessionName::new("S_20260102-000000").unwrap();
    let _ = volume_state(&vol, data, None);
    let _ = volume_state(&vol, data, Some(&name));
    for (prev, name) in [(None, &p.name), (Some(&p), &name)] {
        if let Ok(i) = session_info(&vol, name, data, prev, cs) {
            assert!(i.volsize.0 <= MAX_VOLSIZE);
            assert!(i.chunks <= cs.count(i.volsize));
            assert!(i.stored_chunks <= i.chunks);
            let _ = manifest_bound(&i);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Invalid names stop at the reply's decoding (the `proto` target).
        let listed: Vec<SessionName> =
            text.split('\n').filter_map(|s| SessionName::new(s).ok()).collect();
        if let Ok(names) = session_list(&vol, &listed) {
            assert!(names.windows(2).all(|w| w[0] < w[1]));
        }
    }
});
