//! 0.2 manifests: one line per chunk recorded in a session, ascending by
//! address, single spaces, `\n`-ended:
//!
//! ```text
//! <sha256 of the compressed chunk file, 64 lowercase hex> x<16 hex address>
//! 0 x<16 hex address>                      all-zero chunk, no file (or, in old sessions, an empty one)
//! ```
//!
//! The reader streams (a manifest can have millions of lines), bounds each
//! line, and checks syntax, strict ascending order and alignment to the chunk
//! size. [`LegacyMerged`] yields the newest entry per address over a chain,
//! with the same merge as our own format (`crate::manifest::MergeChain`).

use crate::manifest::{Addressed, MergeChain, Sourced};
use anyhow::{anyhow, bail, Context, Result};
use sparsebak_common::names::{parse_chunk_file_name, SessionName};
use sparsebak_common::units::{ByteOffset, ChunkSize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A data line is 83 bytes with its newline.
const MAX_LINE: u64 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyRef {
    Zero,
    /// SHA-256 of the stored (compressed) file.
    Data([u8; 32]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegacyEntry {
    pub addr: ByteOffset,
    pub chunk: LegacyRef,
}

impl LegacyEntry {
    pub fn parse(line: &str) -> Result<LegacyEntry, String> {
        let (h, a) = line
            .split_once(' ')
            .ok_or_else(|| format!("malformed manifest line {line:?}"))?;
        let addr = parse_chunk_file_name(a).ok_or_else(|| format!("bad chunk address {a:?}"))?;
        let chunk = if h == "0" {
            LegacyRef::Zero
        } else {
            if h.len() != 64
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!(
                    "bad hash {h:?}: expected 64 lowercase hex digits or 0"
                ));
            }
            let mut d = [0u8; 32];
            hex::decode_to_slice(h, &mut d).map_err(|_| format!("bad hash {h:?}"))?;
            LegacyRef::Data(d)
        };
        Ok(LegacyEntry { addr, chunk })
    }
}

/// Streams one manifest, checking every line.
pub struct LegacyManifestReader {
    r: BufReader<File>,
    path: PathBuf,
    cs: ChunkSize,
    last: Option<ByteOffset>,
    lineno: u64,
    buf: Vec<u8>,
}

impl LegacyManifestReader {
    pub fn open(path: &Path, cs: ChunkSize) -> Result<Self> {
        let f =
            File::open(path).with_context(|| format!("cannot open manifest {}", path.display()))?;
        Ok(LegacyManifestReader {
            r: BufReader::with_capacity(1 << 16, f),
            path: path.into(),
            cs,
            last: None,
            lineno: 0,
            buf: Vec::new(),
        })
    }

    fn read_line(&mut self) -> Result<Option<LegacyEntry>> {
        self.buf.clear();
        let n = (&mut self.r)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        self.lineno += 1;
        let at = || format!("manifest {} line {}", self.path.display(), self.lineno);
        if self.buf.pop() != Some(b'\n') {
            bail!("{}: line too long or not terminated by a newline", at());
        }
        let s = std::str::from_utf8(&self.buf).map_err(|_| anyhow!("{}: not UTF-8", at()))?;
        let e = LegacyEntry::parse(s).map_err(|m| anyhow!("{}: {m}", at()))?;
        if e.addr.0 % self.cs.bytes() != 0 {
            bail!(
                "{}: address {:#x} is not a multiple of the chunk size {}",
                at(),
                e.addr.0,
                self.cs.bytes()
            );
        }
        if self.last.is_some_and(|p| e.addr <= p) {
            bail!(
                "{}: address {:#x} is not in ascending order (duplicate or unsorted)",
                at(),
                e.addr.0
            );
        }
        self.last = Some(e.addr);
        Ok(Some(e))
    }
}

impl Iterator for LegacyManifestReader {
    type Item = Result<LegacyEntry>;
    fn next(&mut self) -> Option<Self::Item> {
        self.read_line().transpose()
    }
}

impl Addressed for LegacyEntry {
    fn addr(&self) -> ByteOffset {
        self.addr
    }
}

/// An entry with the index (in the newest-first list) of the session that holds it.
pub type LegacySourced = Sourced<LegacyEntry>;

/// The newest entry per address over 0.2 manifests given newest first, below
/// `limit`: the merge of our own format over 0.2's reader.
pub type LegacyMerged = MergeChain<LegacyManifestReader, LegacyEntry>;

impl LegacyMerged {
    pub fn new(
        newest_first: Vec<(SessionName, PathBuf)>,
        cs: ChunkSize,
        limit: u64,
    ) -> Result<Self> {
        Self::open(newest_first, limit, |p| LegacyManifestReader::open(p, cs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs() -> ChunkSize {
        ChunkSize::from_factor(1).unwrap()
    }

    fn read(text: &str) -> Result<Vec<LegacyEntry>> {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("manifest");
        std::fs::write(&p, text).unwrap();
        LegacyManifestReader::open(&p, cs()).unwrap().collect()
    }

    #[test]
    fn lines() {
        let h = "ab".repeat(32);
        let e = read(&format!("{h} x0000000000000000\n0 x0000000000010000\n")).unwrap();
        assert_eq!(e[0].chunk, LegacyRef::Data([0xab; 32]));
        assert_eq!((e[1].addr.0, e[1].chunk), (0x10000, LegacyRef::Zero));
        let up = "AB".repeat(32);
        for (bad, why) in [
            (format!("{up} x0000000000000000\n"), "bad hash"),
            (format!("{h}  x0000000000000000\n"), "bad chunk address"),
            (format!("{h} x0000000000000000"), "not terminated"),
            ("0 x0000000000001000\n".into(), "multiple of the chunk size"),
            (
                "0 x0000000000010000\n0 x0000000000000000\n".into(),
                "ascending",
            ),
            (
                "0 x0000000000010000\n0 x0000000000010000\n".into(),
                "ascending",
            ),
            (
                format!("{} x0000000000000000\n", "1".repeat(200)),
                "too long",
            ),
            ("1 x0000000000000000\n".into(), "bad hash"),
            ("0 x0000000000000000 extra\n".into(), "bad chunk address"),
        ] {
            let e = read(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn merge_newest_wins() {
        let t = tempfile::tempdir().unwrap();
        let w = |n: &str, s: &str| {
            let p = t.path().join(n);
            std::fs::write(&p, s).unwrap();
            p
        };
        let h = |c: char| c.to_string().repeat(64);
        let old = w(
            "a",
            &format!(
                "{} x0000000000000000\n{} x0000000000010000\n{} x0000000000020000\n",
                h('1'),
                h('1'),
                h('1')
            ),
        );
        let new = w(
            "b",
            &format!("0 x0000000000010000\n{} x0000000000030000\n", h('2')),
        );
        let s = |n: &str| SessionName::new(n).unwrap();
        let got: Vec<(u64, usize)> = LegacyMerged::new(
            vec![(s("S_20190102-000000"), new), (s("S_20190101-000000"), old)],
            cs(),
            0x30000,
        )
        .unwrap()
        .map(|r| r.map(|x| (x.entry.addr.0, x.source)))
        .collect::<Result<_>>()
        .unwrap();
        assert_eq!(got, vec![(0, 1), (0x10000, 0), (0x20000, 1)]);
    }
}
