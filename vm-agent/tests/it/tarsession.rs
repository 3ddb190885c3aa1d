//! Tar sessions on the agent (docs/FORMAT.md §13): a `PutSession` with
//! `format: tar` is checked member by member exactly like a folder session
//! but stored as `chunks.tar` + `chunks.idx`; `ReadFiles` serves its chunk
//! paths from the tar through the index, and refuses every index or tar
//! that the agent could not have written (offsets past the end, overlaps,
//! unsorted entries, a header that does not match, a symlink).

use crate::support::*;
use sparsebak_common::proto::{ErrorKind, Response, FILE_DATA, FILE_MISSING, FILE_REFUSED};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

fn put_tar(
    ag: &mut Agent,
    session: &str,
    expect_last: Option<&str>,
    format: &str,
    data: Vec<u8>,
) -> Response {
    ag.put_format(VOL, session, expect_last, None, Some(format), data)
}

/// Store and commit `S1` as a tar session.
fn commit_tar(fx: &Fixture) -> Session {
    fx.commit_session_as(S1, None, Some("tar"))
}

fn sdir(fx: &Fixture) -> PathBuf {
    fx.vol_dir(VOL).join(S1)
}

/// Read every path; the raw reply frames.
fn read_all(fx: &Fixture, paths: &[String]) -> Vec<Vec<u8>> {
    let mut ag = fx.agent(false);
    ag.start_read(VOL);
    let out = paths.iter().map(|p| ag.read_one(p.as_bytes())).collect();
    assert_eq!(ag.end_read(), Response::Ok);
    ag.bye();
    out
}

fn chunk_req(addr: u64) -> String {
    format!("{S1}/{}", chunk_path(addr))
}

#[test]
fn a_tar_session_is_one_tar_file_and_serves_every_chunk() {
    let fx = Fixture::new();
    let s = commit_tar(&fx);
    let mut names: Vec<String> = fs::read_dir(sdir(&fx))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["chunks.idx", "chunks.tar", "info.json", "manifest"]);
    // Any tar lists it, members in address order.
    let mut ar = tar::Archive::new(fs::File::open(sdir(&fx).join("chunks.tar")).unwrap());
    let members: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    let want: Vec<String> = s.chunks.iter().map(|(a, _)| chunk_path(*a)).collect();
    assert_eq!(members, want);
    let mut paths: Vec<String> = s.chunks.iter().map(|(a, _)| chunk_req(*a)).collect();
    paths.push(chunk_req(0x20000));
    paths.push(format!("{S1}/manifest"));
    let replies = read_all(&fx, &paths);
    for ((_, data), r) in s.chunks.iter().zip(&replies) {
        assert_eq!(r[0], FILE_DATA);
        assert_eq!(&r[1..], &data[..]);
    }
    assert_eq!(replies[3], [FILE_MISSING]);
    assert_eq!(&replies[4][1..], &s.manifest[..]);
}

#[test]
fn a_tar_session_checks_members_like_a_folder_session() {
    let fx = Fixture::new();
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let t = Tar::new()
        .file(&chunk_path(0x10000), b"b")
        .file(&chunk_path(0), b"a")
        .file("manifest", b"")
        .file("info.json", b"{}")
        .finish();
    let msg = expect_error(put_tar(&mut ag, S1, None, "tar", t), ErrorKind::Invalid);
    assert_names(&msg, "out of address order");
    assert!(ag.finish().is_err());
    let mut ag = fx.agent(true);
    let msg = expect_error(
        put_tar(&mut ag, S1, None, "zip", Session::sample(S1).tar()),
        ErrorKind::Invalid,
    );
    assert_names(&msg, "session format \"zip\" is not known");
    assert!(ag.finish().is_err());
    fx.assert_unchanged(&before, &[fx.vol_dir(VOL)]);
}

/// The index entries: (addr, offset, len).
fn entries(idx: &[u8]) -> Vec<[u64; 3]> {
    idx[16..]
        .chunks(24)
        .map(|e| {
            let u = |i: usize| u64::from_le_bytes(e[i..i + 8].try_into().unwrap());
            [u(0), u(8), u(16)]
        })
        .collect()
}

fn with_entries(idx: &[u8], es: &[[u64; 3]]) -> Vec<u8> {
    let mut out = idx[..16].to_vec();
    for e in es {
        for v in e {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Damage the stored session with `f`, then reading chunk `addr` must be
/// refused with a message naming `why`, and the stream must go on.
fn refused(what: &str, addr: u64, why: &str, f: impl FnOnce(&Fixture, Vec<u8>, u64)) {
    let fx = Fixture::new();
    commit_tar(&fx);
    let idx = fs::read(sdir(&fx).join("chunks.idx")).unwrap();
    let tar_len = fs::metadata(sdir(&fx).join("chunks.tar")).unwrap().len();
    f(&fx, idx, tar_len);
    let replies = read_all(&fx, &[chunk_req(addr), format!("{S1}/info.json")]);
    assert_eq!(
        replies[0][0],
        FILE_REFUSED,
        "{what}: served {:?}",
        &replies[0][..1]
    );
    let msg = String::from_utf8_lossy(&replies[0][1..]).into_owned();
    assert_names(&msg, why);
    assert_names(&msg, &chunk_path(addr));
    assert_eq!(replies[1][0], FILE_DATA, "{what}: the stream did not go on");
}

fn write_idx(fx: &Fixture, idx: &[u8]) {
    fs::write(sdir(fx).join("chunks.idx"), idx).unwrap();
}

#[test]
fn hostile_indexes_are_refused() {
    refused(
        "offset past end",
        0x1000_0000,
        "past the end of the tar file",
        |fx, idx, len| {
            let mut es = entries(&idx);
            es[2][1] = len;
            write_idx(fx, &with_entries(&idx, &es));
        },
    );
    refused(
        "length past end",
        0,
        "past the end of the tar file",
        |fx, idx, _| {
            let mut es = entries(&idx);
            es[2][2] = 60_000;
            write_idx(fx, &with_entries(&idx, &es));
        },
    );
    refused(
        "overlap",
        0x10000,
        "overlaps the previous member",
        |fx, idx, _| {
            let mut es = entries(&idx);
            es[1][1] = es[0][1] + 512;
            write_idx(fx, &with_entries(&idx, &es));
        },
    );
    refused("unsorted", 0, "unsorted or repeated", |fx, idx, _| {
        let mut es = entries(&idx);
        es.swap(0, 1);
        write_idx(fx, &with_entries(&idx, &es));
    });
    refused("repeated", 0, "unsorted or repeated", |fx, idx, _| {
        let mut es = entries(&idx);
        es[1][0] = es[0][0];
        write_idx(fx, &with_entries(&idx, &es));
    });
    refused("misaligned", 0, "not a multiple of 512", |fx, idx, _| {
        let mut es = entries(&idx);
        es[0][1] += 1;
        write_idx(fx, &with_entries(&idx, &es));
    });
    refused("oversized", 0, "over the chunk file limit", |fx, idx, _| {
        let mut es = entries(&idx);
        es[0][2] = u64::MAX - 100;
        write_idx(fx, &with_entries(&idx, &es));
    });
    refused("count", 0, "index header is not valid", |fx, mut idx, _| {
        idx[8] = 2;
        write_idx(fx, &idx);
    });
    refused("magic", 0, "index header is not valid", |fx, mut idx, _| {
        idx[0] = b'X';
        write_idx(fx, &idx);
    });
    refused(
        "truncated index",
        0,
        "not a whole number of entries",
        |fx, idx, _| {
            write_idx(fx, &idx[..idx.len() - 5]);
        },
    );
    refused("huge index", 0, "more than a tar file", |fx, idx, _| {
        let mut big = idx.clone();
        big.resize(16 + 24 * 100_000, 0);
        big[8..16].copy_from_slice(&100_000u64.to_le_bytes());
        write_idx(fx, &big);
    });
    // Sorted and in bounds, but pointing at another member's data.
    refused(
        "wrong member",
        0x20000,
        "names another member",
        |fx, idx, _| {
            let mut es = entries(&idx);
            es[1][0] = 0x20000;
            write_idx(fx, &with_entries(&idx, &es));
        },
    );
    refused(
        "size mismatch",
        0x10000,
        "does not match the index",
        |fx, idx, _| {
            let mut es = entries(&idx);
            es[1][2] -= 1;
            write_idx(fx, &with_entries(&idx, &es));
        },
    );
    refused("bad header checksum", 0, "checksum", |fx, _, _| {
        let p = sdir(fx).join("chunks.tar");
        let mut t = fs::read(&p).unwrap();
        t[0] ^= 1;
        fs::write(&p, t).unwrap();
    });
    refused(
        "truncated tar",
        0,
        "past the end of the tar file",
        |fx, _, len| {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(sdir(fx).join("chunks.tar"))
                .unwrap();
            f.set_len(len / 2).unwrap();
        },
    );
    refused("tar missing", 0, "chunks.tar is missing", |fx, _, _| {
        fs::remove_file(sdir(fx).join("chunks.tar")).unwrap();
    });
}

#[test]
fn planted_symlinks_and_devices_are_not_read() {
    for name in ["chunks.tar", "chunks.idx"] {
        refused(name, 0, "is a symlink", |fx, _, _| {
            let real = sdir(fx).join(name);
            let moved = fx.outside.join(name);
            fs::rename(&real, &moved).unwrap();
            symlink(&moved, &real).unwrap();
        });
    }
    refused("fifo", 0, "not a regular file", |fx, _, _| {
        let p = sdir(fx).join("chunks.tar");
        fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    });
    refused(
        "symlinked parts dir",
        0,
        "parts is not a directory (or a symlink to one)",
        |fx, _, _| {
            fs::create_dir(fx.outside.join("p")).unwrap();
            symlink(fx.outside.join("p"), sdir(fx).join("parts")).unwrap();
            // The own part no longer holds chunk 0, so parts/ is looked at.
            fs::remove_file(sdir(fx).join("chunks.idx")).unwrap();
            fs::remove_file(sdir(fx).join("chunks.tar")).unwrap();
        },
    );
}
