//! Session manifests: one line per chunk recorded in a session, ascending by
//! address.
//!
//! ```text
//! <stored sha256> <content sha256> x<16 hex address>    chunk stored as a file
//! 0 x<16 hex address>                                     all-zero chunk, no file
//! ```
//!
//! The stored hash covers the chunk file's bytes and is checked before any
//! decoding; the content hash covers the decoded chunk and is checked after.
//! [`Merged`] streams the newest entry per address over a chain of manifests
//! with memory bounded by the number of sessions, not the volume size.

use anyhow::{bail, Context, Result};
use sparsebak_common::names::{parse_chunk_file_name, SessionName};
use sparsebak_common::units::ByteOffset;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub type Digest = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkRef {
    Zero,
    Data { stored: Digest, content: Digest },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub addr: ByteOffset,
    pub chunk: ChunkRef,
}

/// Longest manifest line accepted (a data line is 148 bytes with newline).
const MAX_LINE: usize = 256;

impl Entry {
    pub fn to_line(&self) -> String {
        match self.chunk {
            ChunkRef::Zero => format!("0 x{:016x}\n", self.addr.0),
            ChunkRef::Data { stored, content } => {
                format!(
                    "{} {} x{:016x}\n",
                    hex::encode(stored),
                    hex::encode(content),
                    self.addr.0
                )
            }
        }
    }

    pub fn parse(line: &str) -> Result<Entry, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let digest = |s: &str| -> Result<Digest, String> {
            if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("bad digest {s:?}"));
            }
            let mut d = [0u8; 32];
            hex::decode_to_slice(s, &mut d).map_err(|_| format!("bad digest {s:?}"))?;
            Ok(d)
        };
        let (chunk, addr) = match fields.as_slice() {
            ["0", a] => (ChunkRef::Zero, a),
            [s, c, a] => (
                ChunkRef::Data {
                    stored: digest(s)?,
                    content: digest(c)?,
                },
                a,
            ),
            _ => return Err(format!("malformed manifest line {line:?}")),
        };
        let addr =
            parse_chunk_file_name(addr).ok_or_else(|| format!("bad chunk address {addr:?}"))?;
        Ok(Entry { addr, chunk })
    }
}

/// Writes a manifest, enforcing ascending addresses.
pub struct ManifestWriter {
    out: BufWriter<File>,
    hasher: sha2::Sha256,
    path: PathBuf,
    last: Option<ByteOffset>,
    pub lines: u64,
}

impl ManifestWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ManifestWriter {
            out: BufWriter::new(f),
            hasher: Default::default(),
            path: path.to_path_buf(),
            last: None,
            lines: 0,
        })
    }
    pub fn push(&mut self, e: &Entry) -> Result<()> {
        if self.last.is_some_and(|l| e.addr <= l) {
            bail!("internal error: manifest address {} not ascending", e.addr);
        }
        self.last = Some(e.addr);
        self.lines += 1;
        let line = e.to_line();
        sha2::Digest::update(&mut self.hasher, line.as_bytes());
        self.out
            .write_all(line.as_bytes())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
    /// Flush and fsync; returns the SHA-256 of the whole manifest.
    pub fn finish(self) -> Result<Digest> {
        let f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
            .with_context(|| format!("cannot fsync {}", self.path.display()))?;
        Ok(sha2::Digest::finalize(self.hasher).into())
    }
}

/// Streams a manifest file, checking order and syntax.
pub struct ManifestReader {
    r: BufReader<File>,
    buf: Vec<u8>,
    path: PathBuf,
    last: Option<ByteOffset>,
    lineno: u64,
    /// Set after the first error: the rest of the file is not read.
    failed: bool,
}

impl ManifestReader {
    pub fn open(path: &Path) -> Result<Self> {
        let f =
            File::open(path).with_context(|| format!("cannot open manifest {}", path.display()))?;
        Ok(ManifestReader {
            r: BufReader::with_capacity(1 << 16, f),
            buf: Vec::new(),
            path: path.into(),
            last: None,
            lineno: 0,
            failed: false,
        })
    }
}

impl ManifestReader {
    /// The next line without its `\n`, reading at most [`MAX_LINE`] + 1
    /// bytes of it: a manifest from the destination may be one endless line.
    fn read_line(&mut self) -> Result<bool> {
        self.buf.clear();
        let n = (&mut self.r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("{} line {}", self.path.display(), self.lineno))?;
        if n == 0 {
            return Ok(false);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE {
            bail!(
                "{} line {}: line too long",
                self.path.display(),
                self.lineno
            );
        }
        Ok(true)
    }

    fn next_entry(&mut self) -> Option<Result<Entry>> {
        self.lineno += 1;
        match self.read_line() {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => return Some(Err(e)),
        }
        let l = &self.buf;
        let at = || format!("{} line {}", self.path.display(), self.lineno);
        let res = (|| {
            if l.len() > MAX_LINE {
                bail!("{}: line too long", at());
            }
            let s = std::str::from_utf8(l).map_err(|_| anyhow::anyhow!("{}: not UTF-8", at()))?;
            let e = Entry::parse(s).map_err(|m| anyhow::anyhow!("{}: {m}", at()))?;
            if self.last.is_some_and(|p| e.addr <= p) {
                bail!("{}: address {} is not in ascending order", at(), e.addr);
            }
            Ok(e)
        })();
        if let Ok(e) = &res {
            self.last = Some(e.addr);
        }
        Some(res)
    }
}

impl Iterator for ManifestReader {
    type Item = Result<Entry>;
    fn next(&mut self) -> Option<Result<Entry>> {
        if self.failed {
            return None;
        }
        let res = self.next_entry();
        self.failed = matches!(res, Some(Err(_)));
        res
    }
}

/// What merging needs of a manifest entry: its chunk address. Our entries
/// and 0.2's ([`crate::legacy::manifest::LegacyEntry`]) share [`MergeChain`].
pub trait Addressed: Copy {
    fn addr(&self) -> ByteOffset;
}

impl Addressed for Entry {
    fn addr(&self) -> ByteOffset {
        self.addr
    }
}

/// An entry together with the session that recorded it and that session's
/// index in the newest-first chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<E = Entry> {
    pub entry: E,
    pub source: usize,
    pub session: SessionName,
}

/// The newest entry per address over a chain of manifests (given newest
/// first), cut at `limit` (exclusive byte address). Each reader checks its
/// own manifest's syntax and order; this only merges.
pub struct MergeChain<R, E> {
    readers: Vec<(SessionName, R)>,
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    heads: Vec<Option<E>>,
    limit: u64,
    failed: bool,
}

/// [`MergeChain`] over manifests of our own format.
pub type Merged = MergeChain<ManifestReader, Entry>;

impl Merged {
    pub fn new(chain_newest_first: Vec<(SessionName, PathBuf)>, limit: u64) -> Result<Self> {
        Self::open(chain_newest_first, limit, ManifestReader::open)
    }
}

impl<R: Iterator<Item = Result<E>>, E: Addressed> MergeChain<R, E> {
    /// Open each manifest with `open` (newest first) and read its first entry.
    pub fn open(
        chain_newest_first: Vec<(SessionName, PathBuf)>,
        limit: u64,
        mut open: impl FnMut(&Path) -> Result<R>,
    ) -> Result<Self> {
        let mut m = MergeChain {
            readers: Vec::new(),
            heap: BinaryHeap::new(),
            heads: Vec::new(),
            limit,
            failed: false,
        };
        for (i, (s, p)) in chain_newest_first.into_iter().enumerate() {
            m.readers.push((s, open(&p)?));
            m.heads.push(None);
            m.advance(i)?;
        }
        Ok(m)
    }

    fn advance(&mut self, i: usize) -> Result<()> {
        self.heads[i] = match self.readers[i].1.next() {
            None => None,
            Some(r) => {
                let e = r?;
                (e.addr().0 < self.limit).then_some(e)
            }
        };
        if let Some(e) = self.heads[i] {
            self.heap.push(Reverse((e.addr().0, i)));
        }
        Ok(())
    }
}

impl<R: Iterator<Item = Result<E>>, E: Addressed> Iterator for MergeChain<R, E> {
    type Item = Result<Sourced<E>>;
    fn next(&mut self) -> Option<Result<Sourced<E>>> {
        if self.failed {
            return None;
        }
        let Reverse((addr, i)) = self.heap.pop()?;
        let entry = self.heads[i].expect("heap entries have heads");
        let session = self.readers[i].0.clone();
        // Older sessions' entries for the same address are shadowed.
        let mut res = self.advance(i);
        while res.is_ok() {
            match self.heap.peek() {
                Some(Reverse((a, j))) if *a == addr => {
                    let j = *j;
                    self.heap.pop();
                    res = self.advance(j);
                }
                _ => break,
            }
        }
        if let Err(e) = res {
            self.failed = true;
            return Some(Err(e));
        }
        Some(Ok(Sourced {
            entry,
            source: i,
            session,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Digest {
        [b; 32]
    }

    fn write(dir: &Path, name: &str, entries: &[Entry]) -> PathBuf {
        let p = dir.join(name);
        let mut w = ManifestWriter::create(&p).unwrap();
        for e in entries {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        p
    }

    fn data(addr: u64, b: u8) -> Entry {
        Entry {
            addr: ByteOffset(addr),
            chunk: ChunkRef::Data {
                stored: d(b),
                content: d(b + 1),
            },
        }
    }

    #[test]
    fn line_round_trip_golden() {
        let e = Entry {
            addr: ByteOffset(0x30000),
            chunk: ChunkRef::Zero,
        };
        assert_eq!(e.to_line(), "0 x0000000000030000\n");
        let e = data(0x10000, 0xab);
        let l = e.to_line();
        assert_eq!(l.len(), 148);
        assert_eq!(Entry::parse(l.trim_end()).unwrap(), e);
        for bad in [
            "",
            "0",
            "1 x0000000000030000",
            "0 x000000000003000",
            "0 0000000000030000",
            "0  x0000000000030000",
        ] {
            assert!(Entry::parse(bad).is_err(), "{bad:?}");
        }
        let upper = l.trim_end().to_uppercase().replace('X', "x");
        assert!(Entry::parse(&upper).is_err());
    }

    #[test]
    fn merge_newest_wins_and_cuts_at_limit() {
        let t = tempfile::tempdir().unwrap();
        let s = |n: &str| SessionName::new(n).unwrap();
        let old = write(
            t.path(),
            "a",
            &[
                data(0, 1),
                data(0x10000, 1),
                data(0x20000, 1),
                data(0x30000, 1),
            ],
        );
        let mid = write(
            t.path(),
            "b",
            &[
                Entry {
                    addr: ByteOffset(0x10000),
                    chunk: ChunkRef::Zero,
                },
                data(0x30000, 2),
            ],
        );
        let new = write(t.path(), "c", &[data(0x20000, 3)]);
        let m: Vec<Sourced> = Merged::new(
            vec![
                (s("S_20260103-000000"), new),
                (s("S_20260102-000000"), mid),
                (s("S_20260101-000000"), old),
            ],
            0x30000,
        )
        .unwrap()
        .collect::<Result<_>>()
        .unwrap();
        let got: Vec<(u64, &str)> = m
            .iter()
            .map(|x| (x.entry.addr.0, x.session.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "S_20260101-000000"),
                (0x10000, "S_20260102-000000"),
                (0x20000, "S_20260103-000000")
            ]
        );
        assert_eq!(m[1].entry.chunk, ChunkRef::Zero);
    }

    #[test]
    fn unordered_manifest_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, "0 x0000000000010000\n0 x0000000000000000\n").unwrap();
        let r: Result<Vec<_>> = ManifestReader::open(&p).unwrap().collect();
        assert!(r.unwrap_err().to_string().contains("ascending"));
    }

    /// Regression: the reader split on newlines before checking the length,
    /// so a manifest from the destination that is one endless line was read
    /// into memory whole. `/dev/zero` is such a line.
    #[test]
    fn endless_line_is_refused_without_reading_it_all() {
        let mut r = ManifestReader::open(Path::new("/dev/zero")).unwrap();
        let e = r.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 1: line too long"), "{e}");
        assert!(r.next().is_none(), "reading goes on after an error");
        // A last line without its newline is still accepted, as before.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("m");
        std::fs::write(&p, "0 x0000000000000000\n0 x0000000000010000").unwrap();
        let r: Vec<Entry> = ManifestReader::open(&p)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(r.len(), 2);
    }
}
