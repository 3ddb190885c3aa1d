//! What can go wrong talking to an S3 store, each case worded for the
//! person who must fix it.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// 403 for the keys themselves: revoked, wrong, suspended, expired.
    #[error("the S3 store at {endpoint} refused the credentials {key_id} from {source_of} ({code}: {message}); the keys may be wrong or revoked: fix them where the agent runs")]
    Credentials {
        endpoint: String,
        key_id: String,
        source_of: String,
        code: String,
        message: String,
    },
    #[error("the S3 bucket {bucket} does not exist at {endpoint} (create it, or fix the store's configuration)")]
    NoSuchBucket { bucket: String, endpoint: String },
    /// Any other answer that retrying cannot change.
    #[error("S3 {op} {key}: HTTP {status} {code}: {message}")]
    Http {
        op: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// Retryable failures (5xx, SlowDown, timeouts, cut connections) that
    /// went on past the retry budget.
    #[error("S3 {op} {key}: gave up after {attempts} attempts over {waited:?}; last: {last}")]
    GaveUp {
        op: &'static str,
        key: String,
        attempts: u32,
        waited: Duration,
        last: String,
    },
    #[error("S3 {op} {key}: the reply is larger than {max} bytes")]
    TooLarge {
        op: &'static str,
        key: String,
        max: u64,
    },
    #[error("S3 {op} {key}: malformed reply: {what}")]
    Malformed {
        op: &'static str,
        key: String,
        what: String,
    },
    /// The writer lease (docs/FORMAT.md §21.4) is no longer this writer's.
    #[error("lost the archive's writer lease {key}: {why}; stopping before writing more")]
    LeaseLost { key: String, why: String },
    #[error("the S3 store at {endpoint} presented a certificate that is not trusted ({why}); give the store's CA file if it has its own CA")]
    Tls { endpoint: String, why: String },
    #[error("S3 store configuration: {0}")]
    Config(String),
}

pub type S3Result<T> = std::result::Result<T, S3Error>;
