//! A tar session part on the backup disk (`sparsebak_agent::tarsession::
//! part::Part`): an index and a tar file the agent did not necessarily
//! write. Input: a u16 index length, the index, then the tar file. Never a
//! panic; a read returns at most the length limit, and only bytes whose
//! tar header names exactly that chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsebak_agent::tarsession::part::{IdxEntry, Part, IDX_ENTRY, IDX_HEADER};
use sparsebak_common::units::ByteOffset;
use std::fs::File;
use std::io::Write;
use std::sync::OnceLock;

const MAX_LEN: u64 = 4096;

fn dir() -> &'static std::path::Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn file(name: &str, bytes: &[u8]) -> File {
    let p = dir().join(name);
    File::create(&p).unwrap().write_all(bytes).unwrap();
    File::open(p).unwrap()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (idx, tar) = data[2..].split_at(n);
    let Ok(part) = Part::open("fuzz".into(), file("t", tar), file("i", idx), MAX_LEN) else {
        return;
    };
    let count = part.len();
    assert_eq!(IDX_HEADER + count * IDX_ENTRY, idx.len() as u64);
    let mut addrs: Vec<u64> = (0..count as usize)
        .map(|i| {
            let at = IDX_HEADER as usize + i * IDX_ENTRY as usize;
            IdxEntry::decode(idx[at..at + IDX_ENTRY as usize].try_into().unwrap())
                .addr
                .0
        })
        .collect();
    addrs.extend([0, 0x10000, u64::MAX]);
    for a in addrs {
        let mut buf = vec![1, 2, 3];
        if let Ok(true) = part.read(ByteOffset(a), &mut buf) {
            assert!(buf.len() as u64 - 3 <= MAX_LEN);
            assert_eq!(&buf[..3], &[1, 2, 3]);
        }
    }
});
