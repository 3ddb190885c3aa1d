//! The reader's hole skipping: a hole becomes exactly the outcome reading
//! its zeros would have given (full and incremental), and is not read.

use super::*;
use crate::manifest::{Entry, ManifestWriter};
use crate::source::file::FileSource;
use crate::source::Region;
use sparsebak_common::names::SessionName;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

const K: u64 = 1024;
const MIB: u64 = 1024 * K;

/// Forwards to a file source, counting the bytes read; with `holes: false`
/// it hides the holes (every chunk is read, as before holes were known).
struct Counting {
    inner: FileSource,
    holes: bool,
    read: AtomicU64,
}

impl Counting {
    fn new(p: &Path, holes: bool) -> Self {
        Counting {
            inner: FileSource::open(p).unwrap(),
            holes,
            read: AtomicU64::new(0),
        }
    }
}

impl VolumeSource for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn size(&self) -> Bytes {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> std::io::Result<()> {
        self.read.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.inner.read_at(buf, off)
    }
    fn region_at(&self, off: ByteOffset) -> std::io::Result<Region> {
        if self.holes {
            return self.inner.region_at(off);
        }
        Ok(Region::Data {
            end: ByteOffset(self.size().0),
        })
    }
}

fn cs() -> ChunkSize {
    ChunkSize::from_factor(1).unwrap()
}

/// What send would do with every chunk: the reader, then the workers.
fn outcomes(src: &dyn VolumeSource, prev: Option<&Path>, prev_size: Option<Bytes>) -> Vec<Outcome> {
    let prev = prev.map(|p| {
        let name = SessionName::new("S_20260101-000000").unwrap();
        Merged::new(vec![(name, p.to_path_buf())], prev_size.unwrap().0).unwrap()
    });
    let (tx, rx) = sync_channel(2);
    let read = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|sc| {
        let read = &read;
        sc.spawn(move || read_batches(src, cs(), prev, prev_size, tx, read));
        let mut out = Vec::new();
        for batch in rx.iter() {
            for job in batch.unwrap() {
                let codec = ChunkCodec::plain(Default::default());
                out.push(process(job, &codec, cs()));
            }
        }
        out
    })
}

/// A manifest recording `outcomes` as a session would (unchanged chunks
/// are not in it; this test's sessions are full ones).
fn manifest_of(dir: &Path, outcomes: &[Outcome]) -> PathBuf {
    let p = dir.join("manifest");
    let mut w = ManifestWriter::create(&p).unwrap();
    for o in outcomes {
        let e = match o {
            Outcome::Zero(addr, _) => Entry {
                addr: *addr,
                chunk: ChunkRef::Zero,
            },
            Outcome::Data {
                addr,
                stored,
                content,
                ..
            } => Entry {
                addr: *addr,
                chunk: ChunkRef::Data {
                    stored: *stored,
                    content: *content,
                },
            },
            Outcome::Unchanged(_) => panic!("a full session has no unchanged chunks"),
        };
        w.push(&e).unwrap();
    }
    w.finish().unwrap();
    p
}

fn write_at(p: &Path, off: u64, byte: u8, len: u64) {
    let f = File::options().write(true).open(p).unwrap();
    f.write_all_at(&vec![byte; len as usize], off).unwrap();
}

/// Holes at the start, in the middle and at the end, a chunk half data and
/// half hole, data written as zeros, and a size that is no multiple of the
/// chunk size.
fn sparse_image(dir: &Path) -> PathBuf {
    let p = dir.join("img");
    File::create(&p).unwrap().set_len(3 * MIB + 5000).unwrap();
    write_at(&p, 512 * K, 0x11, 64 * K); // one whole chunk
    write_at(&p, 1024 * K, 0x22, 32 * K); // half a chunk, then a hole
    write_at(&p, 1500 * K, 0, 64 * K); // zeros written as data
    write_at(&p, 2 * MIB + 100, 0x33, 10); // a few bytes
    p
}

fn read_chunks(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Data { .. }))
        .count()
}

#[test]
fn holes_give_the_outcomes_of_reading_zeros_and_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = sparse_image(dir.path());
    let (with, without) = (Counting::new(&p, true), Counting::new(&p, false));
    let a = outcomes(&with, None, None);
    let b = outcomes(&without, None, None);
    assert_eq!(a, b);
    assert_eq!(a.len(), 49); // 3 MiB + 5000 in 64 KiB chunks
    assert_eq!(read_chunks(&a), 3);
    assert_eq!(without.read.load(Ordering::Relaxed), 3 * MIB + 5000);
    // The three data chunks and the chunk of written zeros (and maybe its
    // neighbour, depending on the file system's allocation), nothing else.
    let read = with.read.load(Ordering::Relaxed);
    assert!(
        (4 * 64 * K..=6 * 64 * K).contains(&read),
        "read {read} bytes"
    );
}

/// Between two sessions: data written into a hole, data punched out into
/// a hole, growth into a hole; a chunk that was zero and still is a hole is
/// unchanged, exactly as when read.
#[test]
fn incremental_outcomes_match_reading_after_writes_and_punches() {
    use nix::fcntl::{fallocate, FallocateFlags};
    let dir = tempfile::tempdir().unwrap();
    let p = sparse_image(dir.path());
    let first = outcomes(&Counting::new(&p, false), None, None);
    let prev = manifest_of(dir.path(), &first);
    let prev_size = Some(Bytes(3 * MIB + 5000));

    write_at(&p, 2560 * K + 7, 0x44, 100); // data into a hole
    let f = File::options().write(true).open(&p).unwrap();
    let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    fallocate(&f, punch, 512 * K as i64, 64 * K as i64).unwrap(); // data out
    f.set_len(4 * MIB + 1).unwrap(); // grows into a hole

    let (with, without) = (Counting::new(&p, true), Counting::new(&p, false));
    let a = outcomes(&with, Some(&prev), prev_size);
    let b = outcomes(&without, Some(&prev), prev_size);
    assert_eq!(a, b);
    let zero_addrs: Vec<u64> = a
        .iter()
        .filter_map(|o| match o {
            Outcome::Zero(addr, _) => Some(addr.0),
            _ => None,
        })
        .collect();
    // The punched chunk, the old partial last chunk (now whole), the new ones.
    let mut want = vec![512 * K, 3 * MIB];
    want.extend((3 * MIB + 64 * K..4 * MIB + 1).step_by(64 * K as usize));
    assert_eq!(zero_addrs, want);
    assert_eq!(read_chunks(&a), 1, "the chunk written into a hole");
    let unchanged = a.iter().filter(|o| matches!(o, Outcome::Unchanged(_)));
    assert_eq!(unchanged.count(), 48 - 2);
    assert!(with.read.load(Ordering::Relaxed) <= 6 * 64 * K);
}

/// The case of the issue, scaled: 4 GiB holding 3 MiB is walked in well
/// under 4 GiB of reads (it would take minutes if the holes were read).
#[test]
fn a_4_gib_sparse_image_reads_only_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big");
    File::create(&p).unwrap().set_len(4 << 30).unwrap();
    for (i, off) in [0, 1 << 30, 3 << 30].into_iter().enumerate() {
        write_at(&p, off + 4096, 0x50 + i as u8, MIB);
    }
    let src = Counting::new(&p, true);
    let out = outcomes(&src, None, None);
    assert_eq!(out.len(), (4 << 30) / (64 * K) as usize);
    assert_eq!(read_chunks(&out), 3 * 17);
    let read = src.read.load(Ordering::Relaxed);
    assert!(read <= 3 * 18 * 64 * K, "read {read} bytes of 4 GiB");
}
