//! Chunk payload sealing: XChaCha20-Poly1305 with a random 192-bit nonce.
//!
//! The associated data binds the chunk file's 12-byte header (codec and
//! decoded length), the archive, the volume and the chunk's address, so a
//! chunk copied or swapped to another address, volume or archive does not
//! open. The session is not bound (prune moves files between sessions by
//! renaming); each session's sealed manifest binds the chunk's digests to
//! it instead (docs/FORMAT.md §18.4).

use super::{random, ArchiveKeys, CryptoError};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// What a chunk is sealed to, besides the archive.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The volume's uuid (`volume.json`), fixed for the volume's life.
    pub volume: &'a str,
    /// The chunk's byte offset in the volume.
    pub addr: u64,
}

fn associated(keys: &ArchiveKeys, b: Binding<'_>, header: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(header.len() + 96);
    ad.extend_from_slice(header);
    ad.extend_from_slice(b"sparsebak-v2 chunk\0");
    ad.extend_from_slice(keys.uuid().as_bytes());
    ad.push(0);
    ad.extend_from_slice(b.volume.as_bytes());
    ad.push(0);
    ad.extend_from_slice(&b.addr.to_be_bytes());
    ad
}

/// Seal `file[header_len + NONCE_LEN..]` in place. `file` holds the header,
/// room for the nonce (filled here), then the payload; the tag is appended.
pub fn seal_chunk(keys: &ArchiveKeys, b: Binding<'_>, file: &mut Vec<u8>, header_len: usize) {
    let nonce: [u8; NONCE_LEN] = random();
    file[header_len..header_len + NONCE_LEN].copy_from_slice(&nonce);
    let ad = associated(keys, b, &file[..header_len]);
    let cipher = XChaCha20Poly1305::new(keys.chunk_key().into());
    let tag = cipher
        .encrypt_in_place_detached(
            XNonce::from_slice(&nonce),
            &ad,
            &mut file[header_len + NONCE_LEN..],
        )
        .expect("a chunk is far below XChaCha20's length limit");
    file.extend_from_slice(&tag);
}

/// Open a sealed chunk file in place; returns the range of the plaintext
/// payload in `file`. Nothing of the payload may be used if this fails.
pub fn open_chunk(
    keys: &ArchiveKeys,
    b: Binding<'_>,
    file: &mut [u8],
    header_len: usize,
) -> Result<std::ops::Range<usize>, CryptoError> {
    if file.len() < header_len + NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed(format!(
            "sealed chunk file is too short ({} bytes)",
            file.len()
        )));
    }
    let (head, rest) = file.split_at_mut(header_len);
    let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
    let tag_at = rest.len() - TAG_LEN;
    let (payload, tag) = rest.split_at_mut(tag_at);
    let ad = associated(keys, b, head);
    XChaCha20Poly1305::new(keys.chunk_key().into())
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            &ad,
            payload,
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::Auth("the chunk file".into()))?;
    Ok(header_len + NONCE_LEN..header_len + NONCE_LEN + tag_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn keys(u: &str) -> ArchiveKeys {
        ArchiveKeys::derive(&MasterKey::from_bytes([3; 32]), u)
    }

    fn sealed(k: &ArchiveKeys, b: Binding<'_>, payload: &[u8]) -> Vec<u8> {
        let mut f = b"HEADER".to_vec();
        f.extend_from_slice(&[0; NONCE_LEN]);
        f.extend_from_slice(payload);
        seal_chunk(k, b, &mut f, 6);
        f
    }

    #[test]
    fn round_trip_and_every_binding_counts() {
        let k = keys("a");
        let b = Binding {
            volume: "v1",
            addr: 65536,
        };
        let f = sealed(&k, b, b"secret payload");
        assert!(!f.windows(6).any(|w| w == b"secret"));
        let mut g = f.clone();
        let r = open_chunk(&k, b, &mut g, 6).unwrap();
        assert_eq!(&g[r], b"secret payload");
        let other_addr = Binding { addr: 0, ..b };
        let other_vol = Binding { volume: "v2", ..b };
        for (kk, bb) in [(&k, other_addr), (&k, other_vol), (&keys("b"), b)] {
            let mut g = f.clone();
            assert!(matches!(
                open_chunk(kk, bb, &mut g, 6),
                Err(CryptoError::Auth(_))
            ));
        }
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            assert!(open_chunk(&k, b, &mut g, 6).is_err(), "bit flip at {i}");
        }
        for n in 0..f.len() {
            let mut g = f[..n].to_vec();
            assert!(open_chunk(&k, b, &mut g, 6).is_err(), "truncated to {n}");
        }
    }

    #[test]
    fn nonces_are_random() {
        let k = keys("a");
        let b = Binding {
            volume: "v",
            addr: 0,
        };
        assert_ne!(sealed(&k, b, b"x"), sealed(&k, b, b"x"));
    }
}
