//! Benchmark of the deduplication index (docs/BENCHMARKS.md, "Deduplication
//! index"): build it from N synthetic records (10% of them repeats of an
//! earlier key, as duplicate chunks are), then time random lookups, half of
//! them hits. Prints one JSON line; `bench/dedup-index.sh` runs it under
//! `/usr/bin/time -v` for the peak RSS.
//!
//! Usage: `dedup_index N [DIR]` (DIR: where the index files go, default /var/tmp).

use sparsebak::dedup::disk::IndexBuilder;
use sparsebak::dedup::{ChunkIndexLookup, IndexLoc, Key};
use std::time::Instant;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn key(i: u64) -> Key {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_le_bytes());
    k[8..].copy_from_slice(&mix(i ^ 0xdead_beef).to_le_bytes());
    k
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `dedup_index run`: fill `send --dedup`'s in-memory map of this run's
/// chunks to its cap and report the peak RSS.
fn run_map() -> anyhow::Result<()> {
    use sparsebak::dedup::catalog::Catalog;
    use sparsebak::dedup::run::{LinkSource, RunDedup, RUN_CAP};
    use sparsebak_common::names::{SessionName, VolName};
    use sparsebak_common::units::{ByteOffset, ChunkSize};
    let before = vm_hwm_kib();
    let cat = Catalog {
        sessions: Vec::new(),
        chunk_size: ChunkSize::from_factor(1).map_err(anyhow::Error::msg)?,
    };
    let mut r = RunDedup::new(Box::new(sparsebak::dedup::MemIndex::default()), cat, None);
    let v = VolName::new("v")?;
    let s = SessionName::new("S_20260101-000000")?;
    for i in 0..RUN_CAP as u64 {
        let mut d = [0u8; 32];
        d[..16].copy_from_slice(&key(i));
        r.link_for(&v, &s, &d, ByteOffset(i << 16))?;
    }
    r.end_session(true);
    println!(
        "{{\"run_map_entries\":{},\"vm_hwm_kib_before\":{before},\"vm_hwm_kib\":{}}}",
        r.remembered(),
        vm_hwm_kib()
    );
    Ok(())
}

/// `dedup_index manifests N DIR`: write N manifest entries (sessions of
/// 1 M chunks, 10% repeats) and time the real build path, manifests
/// included (`Catalog::build_index`).
fn from_manifests(n: u64, base: &str) -> anyhow::Result<()> {
    use sparsebak::dedup::catalog::{Catalog, SessionRef};
    use sparsebak::manifest::{ChunkRef, Entry, ManifestWriter};
    use sparsebak_common::names::{SessionName, VolName};
    use sparsebak_common::units::{ByteOffset, ChunkSize};
    let dir = tempfile::Builder::new()
        .prefix("sparsebak-dedup-bench-")
        .tempdir_in(base)?;
    let per = 1_000_000u64;
    let mut sessions = Vec::new();
    let mut i = 0u64;
    for s in 0..n.div_ceil(per) {
        let path = dir.path().join(format!("manifest-{s}"));
        let mut w = ManifestWriter::create(&path)?;
        for c in 0..per.min(n - s * per) {
            let k = if i % 10 == 9 { key(mix(i) % i) } else { key(i) };
            let mut stored = [0u8; 32];
            stored[..16].copy_from_slice(&k);
            w.push(&Entry {
                addr: ByteOffset(c << 16),
                chunk: ChunkRef::Data {
                    stored,
                    content: stored,
                },
            })?;
            i += 1;
        }
        w.finish()?;
        sessions.push(SessionRef {
            vol: VolName::new(&format!("v{s}"))?,
            session: SessionName::new("S_20260101-000000")?,
            manifest: path,
            stored_chunks: per,
        });
    }
    let cat = Catalog {
        sessions,
        chunk_size: ChunkSize::from_factor(1).map_err(anyhow::Error::msg)?,
    };
    let idx_dir = tempfile::Builder::new()
        .prefix("idx-")
        .tempdir_in(dir.path())?;
    let before = vm_hwm_kib();
    let t0 = Instant::now();
    let idx = cat.build_index(idx_dir.path())?;
    println!(
        "{{\"entries\":{n},\"distinct\":{},\"build_from_manifests_s\":{:.2},\"vm_hwm_kib_before\":{before},\"vm_hwm_kib\":{}}}",
        idx.len(),
        t0.elapsed().as_secs_f64(),
        vm_hwm_kib()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let first = args
        .next()
        .expect("usage: dedup_index N [DIR] | dedup_index run | dedup_index manifests N [DIR]");
    if first == "run" {
        return run_map();
    }
    if first == "manifests" {
        let n: u64 = args.next().expect("manifests N").parse()?;
        let base = args.next().unwrap_or_else(|| "/var/tmp".into());
        return from_manifests(n, &base);
    }
    let n: u64 = first.parse()?;
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::Builder::new()
        .prefix("sparsebak-dedup-bench-")
        .tempdir_in(base)?;
    let t0 = Instant::now();
    let mut b = IndexBuilder::new(dir.path())?;
    for i in 0..n {
        // Every tenth record repeats an earlier chunk's bytes.
        let k = if i % 10 == 9 { key(mix(i) % i) } else { key(i) };
        let loc = IndexLoc {
            session: (i / 1_000_000) as u32,
            chunk: (i % 1_000_000) as u32,
        };
        b.push(&k, loc)?;
    }
    let pushed = Instant::now();
    let idx = b.finish()?;
    let built = t0.elapsed().as_secs_f64();
    let sort = pushed.elapsed().as_secs_f64();
    let lookups = 1_000_000u64;
    let t1 = Instant::now();
    let mut hits = 0u64;
    for j in 0..lookups {
        let k = if j % 2 == 0 {
            key(mix(j) % n)
        } else {
            key(n + j)
        };
        hits += idx.lookup(&k)?.is_some() as u64;
    }
    let look = t1.elapsed().as_secs_f64();
    let file = std::fs::metadata(dir.path().join("index"))?.len();
    println!(
        "{{\"records\":{n},\"distinct\":{},\"build_s\":{built:.2},\"sort_s\":{sort:.2},\
         \"lookups\":{lookups},\"hits\":{hits},\"lookup_us\":{:.2},\"fence_bytes\":{},\
         \"index_file_bytes\":{file},\"vm_hwm_kib\":{}}}",
        idx.len(),
        look * 1e6 / lookups as f64,
        idx.memory_bytes(),
        vm_hwm_kib()
    );
    Ok(())
}
