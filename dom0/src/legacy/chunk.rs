//! 0.2 chunk files: a bare zlib stream (RFC 1950, since April 2019) or a gzip
//! stream (RFC 1952, older archives), detected by the header as 0.2's
//! `zlib.decompress(…, 32+15)` did. Decoding is bounded: never more than the
//! chunk size comes out, so a hostile stream cannot exhaust memory. Callers
//! check the SHA-256 of the file against the local manifest *before*
//! calling [`decode`].

use flate2::read::{GzDecoder, ZlibDecoder};
use std::io::Read;

/// Smallest and largest stored chunk file 0.2 accepted: 1 to
/// `chunksize + chunksize/1024` bytes.
pub fn max_stored(chunk_size: u64) -> u64 {
    chunk_size + chunk_size / 1024
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LegacyChunkError {
    #[error("the stored file is neither a zlib nor a gzip stream")]
    UnknownCodec,
    #[error("the stored file decompresses to more than {0} bytes")]
    TooLong(u64),
    #[error("the stored file does not decompress: {0}")]
    Decode(String),
}

fn is_zlib(f: &[u8]) -> bool {
    f.len() >= 2
        && f[0] & 0x0f == 8
        && f[0] >> 4 <= 7
        && (u16::from(f[0]) << 8 | u16::from(f[1])) % 31 == 0
}

fn is_gzip(f: &[u8]) -> bool {
    f.len() >= 3 && f[0] == 0x1f && f[1] == 0x8b && f[2] == 8
}

/// Decompress a chunk file into at most `max` bytes.
pub fn decode(file: &[u8], max: u64) -> Result<Vec<u8>, LegacyChunkError> {
    let reader: Box<dyn Read + '_> = if is_gzip(file) {
        Box::new(GzDecoder::new(file))
    } else if is_zlib(file) {
        Box::new(ZlibDecoder::new(file))
    } else {
        return Err(LegacyChunkError::UnknownCodec);
    };
    let mut out = Vec::with_capacity(max as usize);
    reader
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| LegacyChunkError::Decode(e.to_string()))?;
    if out.len() as u64 > max {
        return Err(LegacyChunkError::TooLong(max));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;

    fn zlib(d: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::new(4));
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    fn gzip(d: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(4));
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn both_codecs_round_trip() {
        let data: Vec<u8> = (0..70000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(decode(&zlib(&data), 70000).unwrap(), data);
        assert_eq!(decode(&gzip(&data), 70000).unwrap(), data);
        assert_eq!(decode(&zlib(&[]), 10).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn hostile_streams() {
        let bomb = zlib(&vec![0u8; 1 << 20]);
        assert_eq!(decode(&bomb, 65536), Err(LegacyChunkError::TooLong(65536)));
        assert_eq!(decode(b"hello", 10), Err(LegacyChunkError::UnknownCodec));
        assert_eq!(decode(&[], 10), Err(LegacyChunkError::UnknownCodec));
        let z = zlib(&[5u8; 5000]);
        assert!(decode(&z[..z.len() - 6], 65536).is_err());
        let mut g = gzip(&[5u8; 5000]);
        let n = g.len();
        g[n - 5] ^= 1; // CRC
        assert!(decode(&g, 65536).is_err());
    }
}
