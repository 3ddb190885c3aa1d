//! The archive side of sparsebak: one request loop over a byte pipe.
//!
//! The agent trusts dom0 for *what* to store but still checks every name and
//! path against the layout, because a bug or a hand-edited config on the dom0
//! side must never write outside the archive. It runs no shell commands.
//!
//! [`dispatch`] decodes requests and hands each to the open archive's
//! [`backend::Backend`]; the file-system one ([`fs_backend`]) hands each to
//! the module that serves it: [`store`] (and [`resume`]), [`read`], [`read_meta`], [`prune_apply`], [`dedup`],
//! [`delete`], [`legacy`], [`digests`]. They share [`open_archive`] (the open archive and
//! its lock) and [`dirfd`] (every no-follow,
//! directory-relative file operation).

pub mod backend;
pub mod dedup;
pub mod delete;
pub mod digests;
pub mod dirfd;
pub mod dispatch;
pub mod error;
pub mod fs_backend;
pub mod fsutil;
pub mod legacy;
pub mod mount;
pub mod open_archive;
pub mod pipe;
pub mod prune_apply;
pub mod read;
pub mod read_meta;
pub mod readahead;
pub mod resume;
pub mod s3;
pub mod s3store;
pub mod say;
pub mod stall;
pub mod store;
pub mod tarsession;
pub mod test_hooks;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API): the
/// private checks of paths dom0 asks for.
#[doc(hidden)]
pub mod fuzzing {
    /// `ReadFiles` path check ([`crate::read`]); `Err` is the refusal.
    pub fn check_read_path(p: &str) -> Result<(), String> {
        crate::read::check_path(p)
    }

    /// What the S3 client reads from a store: a ListObjectsV2 reply (keys
    /// and sizes, or the refusal), an error body's fields, a lease record,
    /// and the store's dates.
    pub fn s3_list(body: &[u8]) -> Result<Vec<(String, u64, u64)>, String> {
        crate::s3::client::fuzz_parse_list(body)
    }
    pub fn s3_lease_record(body: &[u8]) -> Result<String, String> {
        crate::s3::lease::fuzz_parse_record(body)
    }
    pub fn s3_dates(s: &str) -> (Option<u64>, Option<u64>) {
        (
            crate::s3::time::parse_iso8601(s),
            crate::s3::time::parse_http_date(s),
        )
    }
    pub fn s3_unescape(s: &str) -> Result<String, String> {
        crate::s3::xml::unescape(s)
    }
    /// `<Code>` and `<Message>` of an error answer with HTTP `status`.
    pub fn s3_error_fields(status: u16, body: &[u8]) -> (String, String) {
        crate::s3::call::error_fields(status, body)
    }

    /// The stored digest of a chunk file read back from the archive, as
    /// `ResumeCheck` reports it (docs/FORMAT.md §19).
    pub fn stored_digest(b: &[u8]) -> [u8; 32] {
        crate::resume::stored_digest_of(b)
    }
}

pub use dispatch::{serve, TEST_HOOK_NO_FEATURES, VERSION};
