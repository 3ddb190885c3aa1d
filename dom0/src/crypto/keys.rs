//! The master key and the sub-keys derived from it.
//!
//! `HKDF-SHA256(ikm = master key, salt = "sparsebak-v2" ‖ archive uuid,
//! info = purpose)` gives one 32-byte key per purpose, so no key is used for
//! two things and a key of one archive means nothing in another.

use super::{random, CryptoError};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sparsebak_common::names::VolName;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const KEY_LEN: usize = 32;

/// HKDF `info` strings, one per purpose (docs/FORMAT.md §18.2).
const CHUNK_INFO: &[u8] = b"sparsebak-v2 chunk aead";
const META_INFO: &[u8] = b"sparsebak-v2 metadata aead";
const DIGEST_INFO: &[u8] = b"sparsebak-v2 content digest";
const NAME_INFO: &[u8] = b"sparsebak-v2 volume name";
const HEADER_INFO: &[u8] = b"sparsebak-v2 header mac";
const NONCE_INFO: &[u8] = b"sparsebak-v2 metadata nonce";

/// The archive's random master key. Never leaves dom0 unwrapped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    pub fn generate() -> Self {
        MasterKey(random())
    }

    pub fn from_bytes(b: [u8; KEY_LEN]) -> Self {
        MasterKey(b)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let mut b = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(s.trim(), &mut b[..])
            .map_err(|_| CryptoError::Malformed("the master key is not 64 hex digits".into()))?;
        Ok(MasterKey(*b))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The sub-keys of one archive.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ArchiveKeys {
    #[zeroize(skip)]
    uuid: String,
    chunk: [u8; KEY_LEN],
    meta: [u8; KEY_LEN],
    digest: [u8; KEY_LEN],
    name: [u8; KEY_LEN],
    header: [u8; KEY_LEN],
    nonce: [u8; KEY_LEN],
}

impl std::fmt::Debug for ArchiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveKeys({}, …)", self.uuid)
    }
}

fn hmac(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl ArchiveKeys {
    pub fn derive(master: &MasterKey, archive_uuid: &str) -> Self {
        let salt = [b"sparsebak-v2 ".as_slice(), archive_uuid.as_bytes()].concat();
        let hk = Hkdf::<Sha256>::new(Some(&salt), master.as_bytes());
        let sub = |info: &[u8]| {
            let mut k = [0u8; KEY_LEN];
            hk.expand(info, &mut k)
                .expect("32 bytes is a valid HKDF length");
            k
        };
        ArchiveKeys {
            uuid: archive_uuid.into(),
            chunk: sub(CHUNK_INFO),
            meta: sub(META_INFO),
            digest: sub(DIGEST_INFO),
            name: sub(NAME_INFO),
            header: sub(HEADER_INFO),
            nonce: sub(NONCE_INFO),
        }
    }

    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    pub(crate) fn chunk_key(&self) -> &[u8; KEY_LEN] {
        &self.chunk
    }

    pub(crate) fn meta_key(&self) -> &[u8; KEY_LEN] {
        &self.meta
    }

    /// A chunk's keyed content digest, HMAC-SHA256: what format 2 manifests
    /// record instead of the plain SHA-256, so the destination cannot test
    /// a guess of a chunk's content.
    pub fn content_digest(&self, data: &[u8]) -> [u8; 32] {
        hmac(&self.digest, &[data])
    }

    /// The directory name of volume `vol` on the destination: `v` and 40
    /// hex digits of HMAC-SHA256(name key, name). Valid as a volume name
    /// itself, so the agent's rules apply to it unchanged.
    pub fn hidden_name(&self, vol: &VolName) -> VolName {
        let h = hmac(&self.name, &[vol.as_str().as_bytes()]);
        VolName::new(&format!("v{}", hex::encode(&h[..20]))).expect("v + hex is a valid name")
    }

    /// MAC of the archive header's bytes (`mac` field left out).
    pub fn header_mac(&self, bytes: &[u8]) -> [u8; 32] {
        hmac(&self.header, &[b"sparsebak-v2 header\0", bytes])
    }

    /// A synthetic nonce prefix for a small metadata file: HMAC-SHA256 of
    /// its associated data and plaintext (SIV), so dom0 can seal its own
    /// copy again to the very bytes the destination holds (the
    /// consistency check compares their sha256, docs/FORMAT.md §17, §18.5).
    pub fn synthetic_nonce(&self, ad: &[u8], plain: &[u8]) -> [u8; 32] {
        hmac(&self.nonce, &[&(ad.len() as u64).to_be_bytes(), ad, plain])
    }

    /// Whether `tag` is the header MAC of `bytes` (constant time).
    pub fn header_mac_ok(&self, bytes: &[u8], tag: &[u8]) -> bool {
        let mut m = HmacSha256::new_from_slice(&self.header).expect("any key length");
        m.update(b"sparsebak-v2 header\0");
        m.update(bytes);
        m.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_keys_differ_by_purpose_and_archive() {
        let m = MasterKey::from_bytes([7; 32]);
        let a = ArchiveKeys::derive(&m, "u1");
        let b = ArchiveKeys::derive(&m, "u2");
        let keys = [a.chunk, a.meta, a.digest, a.name, a.header, a.nonce];
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_ne!(a.chunk, b.chunk);
        assert_ne!(a.content_digest(b"x"), b.content_digest(b"x"));
        assert_ne!(a.content_digest(b"x"), crate::chunk::sha256(b"x"));
    }

    #[test]
    fn hidden_names_are_stable_valid_and_distinct() {
        let k = ArchiveKeys::derive(&MasterKey::from_bytes([1; 32]), "u");
        let v = |s: &str| VolName::new(s).unwrap();
        let h = k.hidden_name(&v("vm-work-private"));
        assert_eq!(h, k.hidden_name(&v("vm-work-private")));
        assert_ne!(h, k.hidden_name(&v("vm-work-privatf")));
        assert_eq!(h.as_str().len(), 41);
        assert!(!h.as_str().contains("work"));
    }

    #[test]
    fn master_key_hex_round_trip() {
        let m = MasterKey::generate();
        assert_eq!(MasterKey::from_hex(&m.to_hex()).unwrap().0, m.0);
        assert!(MasterKey::from_hex("abc").is_err());
        assert_ne!(MasterKey::generate().0, m.0);
    }
}
