//! The agent's receiving side of `PutSession` (`sparsebak_agent::store::
//! put_session`) on a throwaway archive: the tar stream, its member names,
//! hard-link members and both session formats. Input: a format byte, then
//! the tar stream. Never a panic; an accepted session directory holds only
//! names the layout allows, and a refused one leaves no directory behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::open_archive::Archive;
use sparsebak_agent::store::{put_session, Put};
use sparsebak_common::names::{parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::SessionFormat;
use std::path::{Path, PathBuf};

const HEADER: &str = r#"{"format":"sparsebak-archive","format_version":1,"uuid":"fuzz","chunk_size":65536,"compression":{"codec":"zstd","level":3},"hash":"sha256","encryption":"none","created_utc":"2026-01-01T00:00:00Z"}"#;
const SESSION: &str = "S_20260101-000000";

struct Fixture {
    _dir: tempfile::TempDir,
    archive: Archive,
    tmp: PathBuf,
}

thread_local! {
    static FIX: Fixture = {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path(), true).unwrap();
        archive.init(HEADER).unwrap();
        let tmp = archive.dir.join("volumes/vm-a").join(format!("{SESSION}-tmp"));
        Fixture { _dir: dir, archive, tmp }
    };
}

/// Every file under `d`, relative to it.
fn files(d: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, base, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_str().unwrap().to_string());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&fmt, stream)) = data.split_first() else {
        return;
    };
    // Three values, as when the format was an optional string (absent,
    // "folders", "tar"): the first two are the same format.
    let format = match fmt % 3 {
        0 | 1 => SessionFormat::Folders,
        _ => SessionFormat::Tar,
    };
    let (vol, session) = (VolName::new("vm-a").unwrap(), SessionName::new(SESSION).unwrap());
    FIX.with(|f| {
        let put = Put {
            vol: &vol,
            session: &session,
            expect_last: None,
            volume_uuid: None,
            format,
            resume_from: None,
        };
        let res = put_session(&f.archive, &put, stream);
        match res {
            Ok(stats) => {
                let mut names = Vec::new();
                files(&f.tmp, &f.tmp, &mut names);
                for n in &names {
                    let ok = n == "manifest"
                        || n == "info.json"
                        || (format == SessionFormat::Tar && (n == "chunks.tar" || n == "chunks.idx"))
                        || (format != SessionFormat::Tar && parse_chunk_rel_path(n).is_ok());
                    assert!(ok, "accepted session holds {n:?}");
                }
                assert!(stats.files >= 2);
            }
            Err(_) => assert!(!f.tmp.exists(), "a refused session left its directory"),
        }
    });
});
