//! The master key wrapped with a passphrase, as the destination keeps it
//! for disaster recovery: Argon2id turns the passphrase and a random salt
//! into a key-encryption key, which seals the master key with
//! XChaCha20-Poly1305. The parameters travel with it
//! ([`sparsebak_common::header::KeyWrap`]), so they can be raised later
//! without a format change; dom0 bounds them before spending memory on
//! values a hostile destination chose.

use super::{random, CryptoError, MasterKey};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sparsebak_common::header::KeyWrap;
use zeroize::Zeroizing;

pub const KDF: &str = "argon2id";
/// About a second of work on a current x86-64 core (docs/BENCHMARKS.md).
pub const DEFAULT_MEMORY_KIB: u32 = 256 * 1024;
pub const DEFAULT_ITERATIONS: u32 = 5;
pub const DEFAULT_PARALLELISM: u32 = 1;
/// Limits on what a wrapped key from the destination may ask for.
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const MAX_ITERATIONS: u32 = 64;
pub const MAX_PARALLELISM: u32 = 16;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Cost {
    fn default() -> Self {
        Cost {
            memory_kib: DEFAULT_MEMORY_KIB,
            iterations: DEFAULT_ITERATIONS,
            parallelism: DEFAULT_PARALLELISM,
        }
    }
}

impl Cost {
    /// The cost new wraps use: the default, or in test builds a tiny one
    /// when `SPARSEBAK_TEST_FAST_KDF` is set (tests do not spend seconds
    /// and 256 MiB per wrap; release binaries ignore it).
    pub fn for_new_wraps() -> Self {
        #[cfg(feature = "test-hooks")]
        if std::env::var_os("SPARSEBAK_TEST_FAST_KDF").is_some() {
            return Cost {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            };
        }
        Cost::default()
    }

    fn argon2(self) -> Result<Argon2<'static>, CryptoError> {
        let p = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| CryptoError::Malformed(format!("bad Argon2id parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, p))
    }
}

fn associated(uuid: &str, w: &KeyWrap) -> Vec<u8> {
    format!(
        "sparsebak-v2 key\0{uuid}\0{}\0{}\0{}\0{}\0{}\0{}",
        w.kdf, w.version, w.memory_kib, w.iterations, w.parallelism, w.salt
    )
    .into_bytes()
}

fn kek(passphrase: &[u8], salt: &[u8], c: Cost) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut k = Zeroizing::new([0u8; 32]);
    c.argon2()?
        .hash_password_into(passphrase, salt, &mut k[..])
        .map_err(|e| CryptoError::Malformed(format!("Argon2id failed: {e}")))?;
    Ok(k)
}

/// Wrap `master` for archive `uuid` with `passphrase`.
pub fn wrap(master: &MasterKey, passphrase: &[u8], uuid: &str, c: Cost) -> KeyWrap {
    let salt: [u8; 16] = random();
    let nonce: [u8; 24] = random();
    let mut w = KeyWrap {
        kdf: KDF.into(),
        version: 0x13,
        memory_kib: c.memory_kib,
        iterations: c.iterations,
        parallelism: c.parallelism,
        salt: hex::encode(salt),
        nonce: hex::encode(nonce),
        wrapped: String::new(),
    };
    let k = kek(passphrase, &salt, c).expect("our own parameters are valid");
    let ct = XChaCha20Poly1305::new((&*k).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: master.as_bytes(),
                aad: &associated(uuid, &w),
            },
        )
        .expect("32 bytes seal");
    w.wrapped = hex::encode(ct);
    w
}

fn field<const N: usize>(name: &str, hexed: &str) -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    hex::decode_to_slice(hexed, &mut b).map_err(|_| {
        CryptoError::Malformed(format!("the wrapped key's {name} is not {N} bytes of hex"))
    })?;
    Ok(b)
}

/// Check a wrapped key's parameters against the limits (before any work).
pub fn check(w: &KeyWrap) -> Result<Cost, CryptoError> {
    if w.kdf != KDF || w.version != 0x13 {
        return Err(CryptoError::Malformed(format!(
            "the wrapped key uses {} version {}, not argon2id version 19",
            w.kdf, w.version
        )));
    }
    let c = Cost {
        memory_kib: w.memory_kib,
        iterations: w.iterations,
        parallelism: w.parallelism,
    };
    if !(8..=MAX_MEMORY_KIB).contains(&c.memory_kib)
        || !(1..=MAX_ITERATIONS).contains(&c.iterations)
        || !(1..=MAX_PARALLELISM).contains(&c.parallelism)
    {
        return Err(CryptoError::Malformed(format!(
            "the wrapped key's Argon2id parameters (memory {} KiB, {} iterations, {} lanes) are outside the limits \
             (at most {MAX_MEMORY_KIB} KiB, {MAX_ITERATIONS} iterations, {MAX_PARALLELISM} lanes)",
            c.memory_kib, c.iterations, c.parallelism
        )));
    }
    Ok(c)
}

/// Unwrap the master key of archive `uuid` with `passphrase`.
pub fn unwrap(w: &KeyWrap, passphrase: &[u8], uuid: &str) -> Result<MasterKey, CryptoError> {
    let c = check(w)?;
    let salt: [u8; 16] = field("salt", &w.salt)?;
    let nonce: [u8; 24] = field("nonce", &w.nonce)?;
    let ct: [u8; 48] = field("wrapped key", &w.wrapped)?;
    let k = kek(passphrase, &salt, c)?;
    let pt = Zeroizing::new(
        XChaCha20Poly1305::new((&*k).into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &associated(uuid, w),
                },
            )
            .map_err(|_| CryptoError::Unwrap)?,
    );
    let b: [u8; 32] = pt[..].try_into().map_err(|_| CryptoError::Unwrap)?;
    Ok(MasterKey::from_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Cost = Cost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn wrap_unwrap_and_refusals() {
        let m = MasterKey::generate();
        let w = wrap(&m, b"correct horse", "u1", FAST);
        assert_eq!(
            unwrap(&w, b"correct horse", "u1").unwrap().as_bytes(),
            m.as_bytes()
        );
        assert_eq!(unwrap(&w, b"wrong", "u1").unwrap_err(), CryptoError::Unwrap);
        assert_eq!(
            unwrap(&w, b"correct horse", "u2").unwrap_err(),
            CryptoError::Unwrap
        );
        let mut t = w.clone();
        t.iterations = 2;
        assert_eq!(
            unwrap(&t, b"correct horse", "u1").unwrap_err(),
            CryptoError::Unwrap
        );
        let mut t = w.clone();
        let mut b = t.wrapped.into_bytes();
        b[3] = if b[3] == b'0' { b'1' } else { b'0' };
        t.wrapped = String::from_utf8(b).unwrap();
        assert_eq!(
            unwrap(&t, b"correct horse", "u1").unwrap_err(),
            CryptoError::Unwrap
        );
        let mut t = w.clone();
        t.memory_kib = u32::MAX;
        assert!(unwrap(&t, b"correct horse", "u1")
            .unwrap_err()
            .to_string()
            .contains("limits"));
        let mut t = w.clone();
        t.salt = "zz".into();
        assert!(matches!(
            unwrap(&t, b"x", "u1"),
            Err(CryptoError::Malformed(_))
        ));
        let mut t = w;
        t.kdf = "scrypt".into();
        assert!(matches!(
            unwrap(&t, b"x", "u1"),
            Err(CryptoError::Malformed(_))
        ));
    }
}
