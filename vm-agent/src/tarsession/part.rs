//! One tar *part*: a tar file of chunk members `<9hex>/x<16hex>` and its
//! index (docs/FORMAT.md §13.2). Both are disk content the agent did not
//! necessarily write (or that was damaged since), so [`Part::open`] checks
//! the whole index before any lookup, and [`Part::read`] re-checks the tar
//! header in front of the member before serving its bytes.

use sparsebak_common::names::chunk_rel_path;
use sparsebak_common::units::ByteOffset;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;

/// First 8 bytes of an index file.
pub const IDX_MAGIC: &[u8; 8] = b"SBTIDX1\n";
/// Index header: magic, then the entry count (u64 little-endian).
pub const IDX_HEADER: u64 = 16;
/// One index entry: address, data offset, data length (u64 little-endian each).
pub const IDX_ENTRY: u64 = 24;
/// Tar block size.
pub const BLOCK: u64 = 512;
/// The smallest a member can take in a tar file: its header (an empty
/// member has no data block).
const MIN_MEMBER: u64 = BLOCK;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxEntry {
    pub addr: ByteOffset,
    /// Offset of the member's data in the tar file (its header is the 512
    /// bytes before).
    pub offset: u64,
    pub len: u64,
}

impl IdxEntry {
    pub fn encode(&self) -> [u8; IDX_ENTRY as usize] {
        let mut b = [0u8; IDX_ENTRY as usize];
        b[0..8].copy_from_slice(&self.addr.0.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; IDX_ENTRY as usize]) -> Self {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        IdxEntry {
            addr: ByteOffset(u(0)),
            offset: u(8),
            len: u(16),
        }
    }

    /// Where the next member's header may start at the earliest.
    fn end(&self) -> u64 {
        self.offset + self.len.div_ceil(BLOCK) * BLOCK
    }
}

/// The index header bytes for `count` entries.
pub fn idx_header(count: u64) -> [u8; IDX_HEADER as usize] {
    let mut b = [0u8; IDX_HEADER as usize];
    b[..8].copy_from_slice(IDX_MAGIC);
    b[8..].copy_from_slice(&count.to_le_bytes());
    b
}

/// An opened, checked part.
#[derive(Debug)]
pub struct Part {
    /// For messages: where the part lives, relative to the volume.
    pub label: String,
    tar: File,
    idx: File,
    count: u64,
}

/// Check that an open file is a regular file; its length.
fn regular_len(f: &File) -> io::Result<u64> {
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(m.len())
}

impl Part {
    /// Check the index of `tar` completely: its size, magic and count; every
    /// entry's address strictly ascending; every member's data block-aligned,
    /// after the previous member's data and its own header, at most
    /// `max_len` bytes, and inside the tar file. Memory is constant.
    pub fn open(label: String, tar: File, idx: File, max_len: u64) -> Result<Part, String> {
        let bad = |m: String| format!("{label}: {m}");
        let tar_len = regular_len(&tar).map_err(|e| bad(format!("tar file: {e}")))?;
        let idx_len = regular_len(&idx).map_err(|e| bad(format!("index: {e}")))?;
        if idx_len < IDX_HEADER || !(idx_len - IDX_HEADER).is_multiple_of(IDX_ENTRY) {
            return Err(bad(format!(
                "index is {idx_len} bytes, not a whole number of entries"
            )));
        }
        let count = (idx_len - IDX_HEADER) / IDX_ENTRY;
        if count > tar_len / MIN_MEMBER {
            return Err(bad(format!(
                "index lists {count} members, more than a tar file of {tar_len} bytes can hold"
            )));
        }
        let mut r = BufReader::with_capacity(1 << 16, &idx);
        let mut head = [0u8; IDX_HEADER as usize];
        r.read_exact(&mut head)
            .map_err(|e| bad(format!("cannot read the index: {e}")))?;
        if head != idx_header(count) {
            return Err(bad("index header is not valid (magic or count)".into()));
        }
        let mut prev: Option<IdxEntry> = None;
        let mut b = [0u8; IDX_ENTRY as usize];
        for i in 0..count {
            r.read_exact(&mut b)
                .map_err(|e| bad(format!("cannot read the index: {e}")))?;
            let e = IdxEntry::decode(&b);
            let earliest = prev.map_or(BLOCK, |p| p.end() + BLOCK);
            let why = if prev.is_some_and(|p| e.addr <= p.addr) {
                Some("its address is not above the previous entry's (unsorted or repeated)")
            } else if !e.offset.is_multiple_of(BLOCK) {
                Some("its offset is not a multiple of 512")
            } else if e.offset < earliest {
                Some("it overlaps the previous member")
            } else if e.len > max_len {
                Some("its length is over the chunk file limit")
            } else if e.offset.checked_add(e.len).is_none_or(|end| end > tar_len) {
                Some("it lies past the end of the tar file")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(bad(format!(
                    "index entry {i} (x{:016x}, offset {}, length {}) is invalid: {why}",
                    e.addr.0, e.offset, e.len
                )));
            }
            prev = Some(e);
        }
        Ok(Part {
            label,
            tar,
            idx,
            count,
        })
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn entry(&self, i: u64) -> io::Result<IdxEntry> {
        let mut b = [0u8; IDX_ENTRY as usize];
        self.idx.read_exact_at(&mut b, IDX_HEADER + i * IDX_ENTRY)?;
        Ok(IdxEntry::decode(&b))
    }

    /// The entry for `addr`, by binary search.
    pub fn find(&self, addr: ByteOffset) -> io::Result<Option<IdxEntry>> {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry(mid)?;
            match e.addr.cmp(&addr) {
                std::cmp::Ordering::Equal => return Ok(Some(e)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    /// Append the member for `addr` to `buf`; `Ok(false)` if the part does
    /// not hold it. The tar header in front of the data must name exactly
    /// this chunk, be a regular file of the indexed length, and carry a
    /// correct checksum.
    pub fn read(&self, addr: ByteOffset, buf: &mut Vec<u8>) -> io::Result<bool> {
        let Some(e) = self.find(addr)? else {
            return Ok(false);
        };
        let bad =
            |m: &str| io::Error::other(format!("{}: member x{:016x}: {m}", self.label, addr.0));
        let mut hb = [0u8; BLOCK as usize];
        self.tar.read_exact_at(&mut hb, e.offset - BLOCK)?;
        let h = tar::Header::from_byte_slice(&hb);
        let stored = h
            .cksum()
            .map_err(|_| bad("tar header checksum is unreadable"))?;
        let sum: u32 = hb
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        if stored != sum {
            return Err(bad("tar header checksum does not match"));
        }
        if h.path_bytes().as_ref() != chunk_rel_path(addr).as_bytes() {
            return Err(bad(
                "the tar header at the indexed offset names another member",
            ));
        }
        if !h.entry_type().is_file() || h.size().ok() != Some(e.len) {
            return Err(bad(
                "the tar header does not match the index (type or size)",
            ));
        }
        let start = buf.len();
        buf.resize(start + e.len as usize, 0);
        self.tar.read_exact_at(&mut buf[start..], e.offset)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarsession::writer::TarWriter;
    use crate::tarsession::{IDX_FILE, TAR_FILE};

    /// The on-disk index format is pinned: changing it breaks archives.
    #[test]
    fn index_bytes_are_pinned() {
        assert_eq!(&idx_header(3), b"SBTIDX1\n\x03\0\0\0\0\0\0\0");
        let e = IdxEntry {
            addr: ByteOffset(0x1_0000),
            offset: 512,
            len: 0x0102,
        };
        let mut want = vec![0u8; 24];
        want[2] = 1;
        want[9] = 2;
        want[16] = 2;
        want[17] = 1;
        assert_eq!(e.encode().to_vec(), want);
        assert_eq!(IdxEntry::decode(&e.encode()), e);
    }

    /// Random damage to the index or the tar file: the part is refused, or
    /// every read either fails, misses, or returns exactly the bytes of a
    /// member whose header names that chunk. Never a panic, never an
    /// allocation over the length limit.
    #[test]
    fn random_damage_never_panics_or_serves_another_member() {
        let d = tempfile::tempdir().unwrap();
        let mut w = TarWriter::create(d.path()).unwrap();
        let addrs: Vec<u64> = (0..6).map(|i| i * 0x10000).collect();
        for &a in &addrs {
            let data = vec![(a >> 16) as u8; 700 + a as usize / 0x100];
            w.append(ByteOffset(a), &mut &data[..], data.len() as u64)
                .unwrap();
        }
        w.finish().unwrap();
        let (tar0, idx0) = (
            std::fs::read(d.path().join(TAR_FILE)).unwrap(),
            std::fs::read(d.path().join(IDX_FILE)).unwrap(),
        );
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut refused, mut served, mut failed) = (0, 0, 0);
        for round in 0..3000 {
            let (mut tar, mut idx) = (tar0.clone(), idx0.clone());
            for _ in 0..1 + rnd() % 3 {
                let (buf, n) = if rnd() % 2 == 0 {
                    let n = idx.len();
                    (&mut idx, n)
                } else {
                    let n = tar.len();
                    (&mut tar, n)
                };
                if n == 0 {
                    continue;
                }
                let at = (rnd() % n as u64) as usize;
                match rnd() % 4 {
                    0 => buf[at] ^= 1 << (rnd() % 8),
                    1 => buf[at] = rnd() as u8,
                    2 => buf.truncate(at),
                    _ => buf[at] = buf[(rnd() % n as u64) as usize],
                }
            }
            let (tp, ip) = (d.path().join("t.tar"), d.path().join("t.idx"));
            std::fs::write(&tp, &tar).unwrap();
            std::fs::write(&ip, &idx).unwrap();
            let Ok(p) = Part::open(
                "t".into(),
                File::open(&tp).unwrap(),
                File::open(&ip).unwrap(),
                4096,
            ) else {
                refused += 1;
                continue;
            };
            for a in addrs.iter().copied().chain([0x8000, 0x60000]) {
                let mut buf = Vec::new();
                let r = p.read(ByteOffset(a), &mut buf);
                failed += usize::from(r.is_err());
                if let Ok(true) = r {
                    served += 1;
                    assert!(buf.len() <= 4096, "round {round}");
                    let want = vec![(a >> 16) as u8; 700 + a as usize / 0x100];
                    // A flipped data byte is for dom0's hash to catch; the
                    // length and the member are always the right ones.
                    assert_eq!(buf.len(), want.len(), "round {round}: x{a:x}");
                }
            }
        }
        // Every outcome happened many times: the test exercised all paths.
        assert!(
            refused > 300 && served > 3000 && failed > 300,
            "{refused} {served} {failed}"
        );
    }

    #[test]
    fn written_parts_read_back_and_list_as_tar() {
        let d = tempfile::tempdir().unwrap();
        let mut w = TarWriter::create(d.path()).unwrap();
        let chunks: Vec<(u64, Vec<u8>)> = vec![
            (0, vec![1; 511]),
            (0x10000, vec![2; 512]),
            (0x20000, vec![]),
            (0x30000, vec![3; 70000]),
        ];
        for (a, data) in &chunks {
            let n = w
                .append(ByteOffset(*a), &mut &data[..], data.len() as u64)
                .unwrap();
            assert_eq!(n, data.len() as u64);
        }
        w.finish().unwrap();
        let open = |n: &str| File::open(d.path().join(n)).unwrap();
        let p = Part::open("t".into(), open(TAR_FILE), open(IDX_FILE), 1 << 20).unwrap();
        assert_eq!(p.len(), 4);
        for (a, data) in &chunks {
            let mut buf = vec![9];
            assert!(p.read(ByteOffset(*a), &mut buf).unwrap());
            assert_eq!(&buf[1..], &data[..]);
        }
        assert!(!p.read(ByteOffset(0x40000), &mut Vec::new()).unwrap());
        let mut ar = tar::Archive::new(open(TAR_FILE));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names[3], "000000000/x0000000000030000");
        // A member over the length limit is refused when the index is checked.
        let e = Part::open("t".into(), open(TAR_FILE), open(IDX_FILE), 60000).unwrap_err();
        assert!(e.contains("over the chunk file limit"), "{e}");
    }
}
