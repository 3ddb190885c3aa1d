//! A request as an operation means it and the answer it gets back, shared
//! by the operations ([`super::client`]) and the retry loop (`call`).

/// Largest error body read.
pub const MAX_ERROR_BODY: u64 = 64 * 1024;

/// One request as the caller means it (each attempt signs it afresh).
pub struct Req<'a> {
    pub op: &'static str,
    pub method: &'static str,
    /// The object key; empty for a request on the bucket.
    pub key: &'a str,
    pub query: Vec<(String, String)>,
    /// Extra headers to send and sign (lower-case names).
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// Longest success body accepted.
    pub max_reply: u64,
    /// Is a success body whole? A body cut short that the transport did
    /// not notice (a chunked reply ending early) is retried, never used.
    pub complete: fn(&[u8]) -> bool,
}

/// For bodies that carry no sign of their own end (their length, when
/// sent, is checked for every reply).
pub fn any_body(_: &[u8]) -> bool {
    true
}

/// An answer that is not retried (any status; the caller decides).
pub struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub length: Option<u64>,
    /// The answer's `Date` (the store's clock), seconds since the epoch.
    pub date: Option<u64>,
    pub body: Vec<u8>,
    /// Attempts it took (more than one: an earlier one may have landed).
    pub attempts: u32,
}
