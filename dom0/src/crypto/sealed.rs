//! Sealed metadata files: what format 2 stores on the destination for
//! `volume.json`, each session's `info.json` and `manifest` (and a prune's
//! new ones). Text, so they travel in the protocol's JSON strings and
//! tar members alike, and streamed in segments, so a manifest of any size
//! is sealed and opened in bounded memory:
//!
//! ```text
//! sparsebak-sealed 2 <kind> <base64: 19-byte nonce prefix>\n
//! <base64: XChaCha20-Poly1305(segment) ‖ tag>\n          one line per segment
//! ```
//!
//! The plaintext is the file compressed with zstd, cut into segments of
//! [`SEGMENT`] bytes (the last one shorter, possibly empty). Segment `i` is
//! sealed with the nonce `prefix ‖ i (u32 big-endian) ‖ last (0 or 1)` and
//! associated data naming the archive, the kind, the context (the hidden
//! volume name and, for session files, the session) and the header line, so
//! segments cannot be reordered, dropped, cut short, or moved to another
//! file (STREAM construction, Hoang et al. 2015). Only authenticated segments
//! are ever decompressed.

use super::{random, ArchiveKeys, CryptoError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use std::io::{self, BufRead, Read, Write};

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const PREFIX_LEN: usize = 19;
const MAGIC: &str = "sparsebak-sealed";
const VERSION: &str = "2";
const TAG_LEN: usize = 16;
/// The longest line a reader accepts: a full segment's base64 and `\n`.
const MAX_LINE: usize = (SEGMENT + TAG_LEN).div_ceil(3) * 4 + 1;

/// What a sealed file holds; part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    Volume,
    Info,
    Manifest,
}

impl MetaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKind::Volume => "volume",
            MetaKind::Info => "info",
            MetaKind::Manifest => "manifest",
        }
    }
}

/// Where a sealed file belongs: its kind and context string.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    pub kind: MetaKind,
    /// `<hidden volume name>` or `<hidden volume name>/<session>`.
    pub context: &'a str,
}

struct Stream<'k> {
    keys: &'k ArchiveKeys,
    prefix: [u8; PREFIX_LEN],
    ad: Vec<u8>,
    counter: u32,
}

impl<'k> Stream<'k> {
    fn new(keys: &'k ArchiveKeys, p: Place<'_>, prefix: [u8; PREFIX_LEN], header: &str) -> Self {
        let mut ad = b"sparsebak-v2 meta\0".to_vec();
        for part in [keys.uuid(), p.kind.as_str(), p.context, header] {
            ad.extend_from_slice(part.as_bytes());
            ad.push(0);
        }
        Stream {
            keys,
            prefix,
            ad,
            counter: 0,
        }
    }

    fn nonce(&self, last: bool) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..23].copy_from_slice(&self.counter.to_be_bytes());
        n[23] = last as u8;
        n
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.keys.meta_key().into())
    }
}

fn header_line(kind: MetaKind, prefix: &[u8]) -> String {
    format!("{MAGIC} {VERSION} {} {}", kind.as_str(), B64.encode(prefix))
}

/// Seals what is written to it into `out`, segment by segment.
pub struct SealWriter<'k, W: Write> {
    s: Stream<'k>,
    buf: Vec<u8>,
    out: W,
}

impl<'k, W: Write> SealWriter<'k, W> {
    pub fn new(keys: &'k ArchiveKeys, p: Place<'_>, out: W) -> io::Result<Self> {
        Self::with_prefix(keys, p, random(), out)
    }

    fn with_prefix(
        keys: &'k ArchiveKeys,
        p: Place<'_>,
        prefix: [u8; PREFIX_LEN],
        mut out: W,
    ) -> io::Result<Self> {
        let header = header_line(p.kind, &prefix);
        out.write_all(header.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(SealWriter {
            s: Stream::new(keys, p, prefix, &header),
            buf: Vec::with_capacity(SEGMENT + TAG_LEN),
            out,
        })
    }

    fn seal_segment(&mut self, last: bool) -> io::Result<()> {
        let nonce = self.s.nonce(last);
        let tag = self
            .s
            .cipher()
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), &self.s.ad, &mut self.buf)
            .map_err(|_| io::Error::other("sealing failed"))?;
        self.buf.extend_from_slice(&tag);
        let mut line = B64.encode(&self.buf);
        line.push('\n');
        self.out.write_all(line.as_bytes())?;
        self.buf.clear();
        self.s.counter = self
            .s
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("sealed file too long"))?;
        Ok(())
    }

    /// Seal the last segment; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_segment(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full segment is sealed only once more data comes, so the last
        // segment is always sealed as the last one.
        if self.buf.len() == SEGMENT && !data.is_empty() {
            self.seal_segment(false)?;
        }
        let n = data.len().min(SEGMENT - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compress and seal everything `input` yields into `out`.
pub fn seal_to<W: Write>(
    keys: &ArchiveKeys,
    p: Place<'_>,
    input: &mut dyn Read,
    out: W,
) -> io::Result<W> {
    let mut z = zstd::stream::write::Encoder::new(SealWriter::new(keys, p, out)?, 3)?;
    io::copy(input, &mut z)?;
    z.finish()?.finish()
}

/// [`seal_to`] for a file held in memory.
pub fn seal_bytes(keys: &ArchiveKeys, p: Place<'_>, plain: &[u8]) -> String {
    let out = seal_to(keys, p, &mut &plain[..], Vec::new()).expect("writing to memory");
    String::from_utf8(out).expect("base64 and ASCII")
}

/// The largest a sealed file of at most `plain` plaintext bytes can be:
/// zstd may grow incompressible data a little, base64 adds a third, and
/// each segment a tag and a newline. Readers bound the fetch with it.
pub fn max_sealed_len(plain: u64) -> u64 {
    plain + plain / 2 + 4096
}

/// [`seal_bytes`] with a synthetic nonce prefix (HMAC of the place and
/// the plaintext) instead of a random one: the same file in the same place
/// always seals to the same bytes, so dom0 can compare its copy with the
/// destination's by digest. Only for small files that are never sealed
/// twice with different contents in the same place by design (info.json
/// of one session, volume.json whose `last` changes with every session);
/// equal plaintexts in one place are the only thing it reveals.
pub fn seal_bytes_synthetic(keys: &ArchiveKeys, p: Place<'_>, plain: &[u8]) -> String {
    let ad = [p.kind.as_str(), "\0", p.context].concat();
    let n = keys.synthetic_nonce(ad.as_bytes(), plain);
    let prefix: [u8; PREFIX_LEN] = n[..PREFIX_LEN].try_into().expect("19 of 32 bytes");
    let w = SealWriter::with_prefix(keys, p, prefix, Vec::new()).expect("writing to memory");
    let mut z = zstd::stream::write::Encoder::new(w, 3).expect("zstd in memory");
    z.write_all(plain).expect("writing to memory");
    let out = z
        .finish()
        .and_then(|w| w.finish())
        .expect("writing to memory");
    String::from_utf8(out).expect("base64 and ASCII")
}

/// Yields the authenticated plaintext segments of a sealed file.
struct OpenReader<'k, R: BufRead> {
    s: Stream<'k>,
    input: R,
    seg: Vec<u8>,
    pos: usize,
    done: bool,
    what: String,
}

fn malformed(what: &str, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        CryptoError::Malformed(format!("{what}: {why}")),
    )
}

fn read_line<R: BufRead>(r: &mut R, what: &str) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(malformed(what, "a line is over the length limit"));
    }
    if line.pop() != Some(b'\n') {
        return Err(malformed(
            what,
            "it ends in the middle of a line (truncated)",
        ));
    }
    Ok(Some(line))
}

impl<'k, R: BufRead> OpenReader<'k, R> {
    fn new(keys: &'k ArchiveKeys, p: Place<'_>, mut input: R, what: &str) -> io::Result<Self> {
        let line = read_line(&mut input, what)?.ok_or_else(|| malformed(what, "it is empty"))?;
        let header = String::from_utf8(line).map_err(|_| malformed(what, "not a sealed file"))?;
        let f: Vec<&str> = header.split(' ').collect();
        if f.len() != 4 || f[0] != MAGIC || f[1] != VERSION {
            return Err(malformed(what, "not a sealed sparsebak file (format 2)"));
        }
        if f[2] != p.kind.as_str() {
            return Err(malformed(
                what,
                &format!("it holds a {} file, not a {} file", f[2], p.kind.as_str()),
            ));
        }
        let prefix: [u8; PREFIX_LEN] = B64
            .decode(f[3])
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed(what, "bad nonce in its first line"))?;
        Ok(OpenReader {
            s: Stream::new(keys, p, prefix, &header),
            input,
            seg: Vec::new(),
            pos: 0,
            done: false,
            what: what.into(),
        })
    }

    fn next_segment(&mut self) -> io::Result<()> {
        let what = &self.what;
        let line = read_line(&mut self.input, what)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                CryptoError::Auth(format!("{what} (it ends before its last segment)")),
            )
        })?;
        let mut seg = B64
            .decode(&line)
            .map_err(|_| malformed(what, "a segment is not base64"))?;
        if seg.len() < TAG_LEN || seg.len() > SEGMENT + TAG_LEN {
            return Err(malformed(what, "a segment has an impossible length"));
        }
        let tag_at = seg.len() - TAG_LEN;
        let tag = *Tag::from_slice(&seg[tag_at..]);
        seg.truncate(tag_at);
        let cipher = self.s.cipher();
        let try_open = |last: bool, seg: &mut Vec<u8>| {
            cipher
                .decrypt_in_place_detached(
                    XNonce::from_slice(&self.s.nonce(last)),
                    &self.s.ad,
                    seg,
                    &tag,
                )
                .is_ok()
        };
        // A failed open leaves the buffer as it was (the tag is checked
        // before anything is decrypted), so the second try sees the same bytes.
        if try_open(false, &mut seg) {
            if seg.len() != SEGMENT {
                return Err(malformed(what, "a segment other than the last is short"));
            }
        } else if try_open(true, &mut seg) {
            self.done = true;
            if read_line(&mut self.input, what)?.is_some() {
                return Err(malformed(what, "data follows its last segment"));
            }
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                CryptoError::Auth(what.clone()),
            ));
        }
        self.s.counter += 1;
        self.seg = seg;
        self.pos = 0;
        Ok(())
    }
}

impl<R: BufRead> Read for OpenReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.seg.len() {
            if self.done {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let n = out.len().min(self.seg.len() - self.pos);
        out[..n].copy_from_slice(&self.seg[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The error inside `e` if the opening failed for a cryptographic or format
/// reason, else an I/O error described as such.
fn crypto_error(e: io::Error, what: &str) -> CryptoError {
    if e.get_ref().is_some_and(|i| i.is::<CryptoError>()) {
        let inner = e.into_inner().expect("checked");
        return *inner.downcast::<CryptoError>().expect("checked");
    }
    CryptoError::Malformed(format!("{what}: {e}"))
}

/// Open a sealed file from `input` into `out`, at most `max` bytes of
/// plaintext; returns the plaintext length. `what` names the file in
/// errors. On error, `out` may hold authenticated plaintext of the segments
/// before the failure: callers write it to a staging place only.
pub fn open_to(
    keys: &ArchiveKeys,
    p: Place<'_>,
    input: impl BufRead,
    max: u64,
    out: &mut dyn Write,
    what: &str,
) -> Result<u64, CryptoError> {
    let r = OpenReader::new(keys, p, input, what).map_err(|e| crypto_error(e, what))?;
    let z = zstd::stream::read::Decoder::with_buffer(io::BufReader::new(r))
        .map_err(|e| crypto_error(e, what))?;
    let n = io::copy(&mut z.take(max + 1), out).map_err(|e| crypto_error(e, what))?;
    if n > max {
        return Err(CryptoError::Malformed(format!(
            "{what}: it opens to more than the limit of {max} bytes"
        )));
    }
    Ok(n)
}

/// [`open_to`] into memory.
pub fn open_bytes(
    keys: &ArchiveKeys,
    p: Place<'_>,
    sealed: &[u8],
    max: u64,
    what: &str,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::new();
    open_to(keys, p, sealed, max, &mut out, what)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
