//! The on-disk index: every (hash key, location) of the archive, sorted by
//! key, first occurrence only, looked up with one `pread` per query.
//!
//! Build ([`IndexBuilder`]): each 24-byte record (16-byte key, u32 session
//! ordinal, u32 chunk index, all big-endian so byte order is sort order)
//! goes to one of 256 bucket files by the key's first byte. [`IndexBuilder::finish`]
//! then loads one bucket at a time, sorts it, keeps the smallest record per
//! key (the oldest session, then the lowest address) and appends it to
//! `index`, recording a fence table: the first record of every `2^bits`-th
//! key prefix, with `bits` chosen so a prefix holds about [`FENCE_TARGET`]
//! records. Memory: one bucket (24 bytes × records / 256) while building;
//! the fence table (about 8 bytes per [`FENCE_TARGET`] records) afterwards.

use super::{ChunkIndexLookup, IndexLoc, Key, KEY_LEN};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes per record.
pub const RECORD: usize = 24;
/// Records per fence range the table aims for (one `pread` of ~3 KiB).
pub const FENCE_TARGET: u64 = 128;
const BUCKETS: usize = 256;
const BUCKET_BUF: usize = 16 * 1024;

fn encode(key: &Key, loc: IndexLoc) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..KEY_LEN].copy_from_slice(key);
    r[16..20].copy_from_slice(&loc.session.to_be_bytes());
    r[20..24].copy_from_slice(&loc.chunk.to_be_bytes());
    r
}

fn decode(r: &[u8]) -> (Key, IndexLoc) {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&r[..KEY_LEN]);
    let session = u32::from_be_bytes(r[16..20].try_into().expect("4 bytes"));
    let chunk = u32::from_be_bytes(r[20..24].try_into().expect("4 bytes"));
    (k, IndexLoc { session, chunk })
}

/// Collects records into bucket files under a directory it owns.
pub struct IndexBuilder {
    dir: PathBuf,
    buckets: Vec<BufWriter<File>>,
    pushed: u64,
}

impl IndexBuilder {
    /// Start an index in `dir` (an empty directory the caller removes later).
    pub fn new(dir: &Path) -> Result<Self> {
        let mut buckets = Vec::with_capacity(BUCKETS);
        for b in 0..BUCKETS {
            let p = dir.join(format!("bucket-{b:02x}"));
            let f = File::create(&p).with_context(|| format!("cannot create {}", p.display()))?;
            buckets.push(BufWriter::with_capacity(BUCKET_BUF, f));
        }
        Ok(IndexBuilder {
            dir: dir.to_path_buf(),
            buckets,
            pushed: 0,
        })
    }

    pub fn push(&mut self, key: &Key, loc: IndexLoc) -> Result<()> {
        self.pushed += 1;
        self.buckets[key[0] as usize]
            .write_all(&encode(key, loc))
            .with_context(|| format!("cannot write the dedup index in {}", self.dir.display()))
    }

    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Sort every bucket into the final index file.
    pub fn finish(self) -> Result<DiskIndex> {
        let ctx = || format!("cannot build the dedup index in {}", self.dir.display());
        let mut files = Vec::with_capacity(BUCKETS);
        for b in self.buckets {
            files.push(
                b.into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(ctx)?,
            );
        }
        let bits = fence_bits(self.pushed);
        let mut fences = vec![0u64; (1usize << bits) + 1];
        let path = self.dir.join("index");
        let mut out = BufWriter::with_capacity(
            1 << 20,
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let mut written = 0u64;
        let mut next_fence = 0usize;
        for (b, f) in files.into_iter().enumerate() {
            drop(f);
            let p = self.dir.join(format!("bucket-{b:02x}"));
            let mut data = Vec::new();
            File::open(&p)
                .and_then(|mut f| f.read_to_end(&mut data))
                .with_context(|| format!("cannot read {}", p.display()))?;
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            if data.len() % RECORD != 0 {
                bail!("dedup index bucket {} is truncated", p.display());
            }
            let mut recs: Vec<[u8; RECORD]> = data
                .chunks_exact(RECORD)
                .map(|c| c.try_into().expect("record size"))
                .collect();
            drop(data);
            recs.sort_unstable();
            recs.dedup_by(|b, a| a[..KEY_LEN] == b[..KEY_LEN]);
            for r in &recs {
                let p = prefix(r[..KEY_LEN].try_into().expect("key"), bits);
                while next_fence <= p {
                    fences[next_fence] = written;
                    next_fence += 1;
                }
                out.write_all(r).with_context(ctx)?;
                written += 1;
            }
        }
        while next_fence < fences.len() {
            fences[next_fence] = written;
            next_fence += 1;
        }
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(ctx)?;
        Ok(DiskIndex {
            file,
            fences,
            bits,
            len: written,
        })
    }
}

/// Fence bits for `n` records: about [`FENCE_TARGET`] records per prefix,
/// between 8 and 24 bits.
fn fence_bits(n: u64) -> u32 {
    let want = (n / FENCE_TARGET).max(1);
    (63 - want.leading_zeros()).clamp(8, 24)
}

fn prefix(key: &Key, bits: u32) -> usize {
    (u32::from_be_bytes(key[..4].try_into().expect("4 bytes")) >> (32 - bits)) as usize
}

/// A finished index: sorted unique keys in a file, a fence table in memory.
pub struct DiskIndex {
    file: File,
    fences: Vec<u64>,
    bits: u32,
    len: u64,
}

impl DiskIndex {
    /// Distinct keys indexed.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes of memory the index keeps (the fence table).
    pub fn memory_bytes(&self) -> usize {
        self.fences.len() * 8
    }
}

impl ChunkIndexLookup for DiskIndex {
    fn lookup(&self, key: &Key) -> Result<Option<IndexLoc>> {
        let p = prefix(key, self.bits);
        let (lo, hi) = (self.fences[p], self.fences[p + 1]);
        if lo == hi {
            return Ok(None);
        }
        let mut buf = vec![0u8; ((hi - lo) as usize) * RECORD];
        self.file
            .read_exact_at(&mut buf, lo * RECORD as u64)
            .context("cannot read the dedup index")?;
        let rec = |i: usize| &buf[i * RECORD..(i + 1) * RECORD];
        let (mut a, mut b) = (0usize, (hi - lo) as usize);
        while a < b {
            let m = (a + b) / 2;
            match rec(m)[..KEY_LEN].cmp(&key[..]) {
                std::cmp::Ordering::Less => a = m + 1,
                std::cmp::Ordering::Greater => b = m,
                std::cmp::Ordering::Equal => return Ok(Some(decode(rec(m)).1)),
            }
        }
        Ok(None)
    }
}
