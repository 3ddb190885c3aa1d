//! Format 2 cryptography (docs/FORMAT.md §18): one random master key per
//! archive, sub-keys derived from it with HKDF, XChaCha20-Poly1305 for
//! every chunk and every metadata file stored on the destination,
//! HMAC-SHA256 for keyed digests and hidden names, and Argon2id to wrap the
//! master key with a passphrase.
//!
//! Everything here is pure computation over bytes (no files, no terminal):
//! [`keys`] (master key and sub-keys), [`wrap`] (the passphrase-wrapped copy
//! kept on the destination), [`seal`] (chunk payloads), [`sealed`] (metadata
//! files, streamed in segments as text). Secrets are wiped on drop
//! (zeroize).

pub mod keys;
pub mod seal;
pub mod sealed;
pub mod wrap;

pub use keys::{ArchiveKeys, MasterKey};

/// Bytes of OS randomness (getrandom(2)).
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the kernel's random number generator is unavailable");
    b
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// AEAD open failed: wrong key, or the bytes or their binding changed.
    #[error(
        "authentication failed: {0} was altered, truncated, moved, or sealed with another key"
    )]
    Auth(String),
    #[error("cannot unwrap the archive key: wrong passphrase, or the wrapped key was altered")]
    Unwrap,
    #[error("{0}")]
    Malformed(String),
}
