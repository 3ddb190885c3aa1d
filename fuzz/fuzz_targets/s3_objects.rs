//! The other objects the agent reads from an object-store archive it does
//! not trust (`sparsebak_agent::s3store`, docs/FORMAT.md §21): a session's
//! commit (`Commit::parse`), the object names of a listing
//! (`parse_object_key`, `parse_commit_key`) and the stored digest of a
//! chunk file read back from a pack (`ResumeCheck`, §21.10).
//! Never a panic; an accepted commit is that session's and generation's,
//! names objects by 64 hex digits and sizes within their limits, absorbs
//! only older sessions and survives its own writing; a parsed object name
//! prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::fuzzing::stored_digest;
use sparsebak_agent::s3store::layout::{
    parse_commit_key, parse_object_key, Commit, MAX_INDEX, MAX_INFO, MAX_MANIFEST,
};
use sparsebak_common::names::SessionName;

fn check(c: &Commit, s: &SessionName, gen: u32) {
    assert_eq!((c.session.as_str(), c.gen), (s.as_str(), gen));
    for (o, max) in [
        (&c.manifest, MAX_MANIFEST),
        (&c.info, MAX_INFO),
        (&c.index, MAX_INDEX),
    ] {
        assert!(o.size <= max);
        assert!(
            o.sha256.len() == 64
                && o.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
    }
    for x in &c.absorbed {
        assert!(SessionName::new(x).unwrap() < *s);
    }
    let again = serde_json::to_vec(c).unwrap();
    assert_eq!(Commit::parse(&again, s, gen).as_ref(), Ok(c));
}

fuzz_target!(|data: &[u8]| {
    // As the commit of a fixed session, and of the session and generation
    // it names itself (so that the checks after the name are reached).
    let fixed = SessionName::new("S_20260102-000000").unwrap();
    if let Ok(c) = Commit::parse(data, &fixed, 1) {
        check(&c, &fixed, 1);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let named = v["session"].as_str().and_then(|s| SessionName::new(s).ok());
        let gen = v["gen"].as_u64().and_then(|g| u32::try_from(g).ok());
        if let (Some(s), Some(g)) = (named, gen) {
            if let Ok(c) = Commit::parse(data, &s, g) {
                check(&c, &s, g);
            }
        }
    }
    if let Ok(key) = std::str::from_utf8(data) {
        if let Some((s, kind, g)) = parse_object_key(key) {
            assert!(g > 0);
            assert_eq!(format!("{s}/{kind}-{g:08x}"), key);
        }
        if let Some((s, g)) = parse_commit_key(key) {
            assert_eq!(format!("{s}/commit-{g:08x}"), key);
        }
    }
    let _ = stored_digest(data);
});
