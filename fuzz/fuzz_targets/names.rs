//! Every name and path parser the agent applies to what dom0 asks for (and
//! dom0 to what the agent lists): chunk paths, `ReadFiles` and `ReadMeta`
//! paths, dedup locations and operations, 0.2 chunk paths, volume and
//! session names, the archive header. Never a panic; whatever parses prints
//! back to exactly the input, and never names `..` or an absolute path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::fuzzing::check_read_path;
use sparsebak_agent::read_meta::check_meta_path;
use sparsebak_common::header::{ArchiveHeader, Compression};
use sparsebak_common::legacy::{parse_legacy_chunk_path, LegacyVolName};
use sparsebak_common::linkref::{ChunkLoc, DedupOp};
use sparsebak_common::names::{
    chunk_file_name, chunk_rel_path, parse_chunk_file_name, parse_chunk_rel_path, SessionName,
    VolName,
};
use sparsebak_common::units::ChunkSize;

fn safe(p: &str) {
    assert!(!p.starts_with('/'), "{p:?}");
    assert!(
        p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."),
        "{p:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ArchiveHeader::parse(data) {
        let j = serde_json::to_vec(&h).unwrap();
        assert_eq!(ArchiveHeader::parse(&j).unwrap(), h);
    }
    // Chunk sizes: a factor (`--chunk-factor`) or bytes (`chunk_size` of
    // archive.json, info.json, archive.ini).
    if data.len() >= 8 {
        let n = u64::from_le_bytes(data[..8].try_into().unwrap());
        for c in [ChunkSize::from_factor(n), ChunkSize::try_from(n)]
            .into_iter()
            .flatten()
        {
            assert!(c.bytes() > 0 && c.bytes() <= 16 << 20, "{n}");
            assert!(c.bytes().is_multiple_of(65536));
        }
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(a) = parse_chunk_file_name(s) {
        assert_eq!(chunk_file_name(a), s);
    }
    if let Ok(a) = parse_chunk_rel_path(s) {
        assert_eq!(chunk_rel_path(a), s);
    }
    if check_read_path(s).is_ok() {
        safe(s);
    }
    if check_meta_path(s).is_ok() {
        safe(s);
    }
    if let Ok((ses, a)) = parse_legacy_chunk_path(s) {
        assert_eq!(format!("{ses}/{}", chunk_rel_path(a)), s);
    }
    if let Ok(l) = ChunkLoc::parse(s) {
        assert_eq!(l.to_path(), s);
        safe(s);
    }
    if let Ok(op) = DedupOp::parse(s) {
        assert_eq!(op.to_line(), format!("{s}\n"));
    }
    if let Ok(v) = VolName::new(s) {
        assert_eq!(v.as_str(), s);
        safe(s);
    }
    if let Ok(v) = LegacyVolName::new(s) {
        assert_eq!(v.as_str(), s);
        safe(s);
    }
    if let Ok(n) = SessionName::new(s) {
        assert_eq!(SessionName::from_parts(n.parts()).unwrap(), n);
    }
    if let Ok(n) = s.parse::<u64>() {
        if let Ok(c) = ChunkSize::from_factor(n) {
            assert!(c.bytes() > 0 && c.bytes() <= 16 << 20, "{n}");
        }
    }
    if let Ok(c) = s.parse::<Compression>() {
        assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
    }
});
