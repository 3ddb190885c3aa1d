//! The agent's S3 client (`sparsebak_agent::s3`) against a **real** Ceph
//! RADOS Gateway, directly and through our fault proxy ([`proxy`]).
//!
//! These tests are `#[ignore]`d in a plain `cargo test`: they need the
//! gateway that tests/suite-s3.sh starts (tests/ceph/start.sh) and the
//! bucket it makes, named by S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY,
//! S3_REGION, S3_BUCKET (and CEPH_CONF for radosgw-admin). The suite runs
//! them with `-- --ignored`; without those variables they fail, never pass.

mod archive;
mod faults;
mod lease;
mod proxy;
mod store;
mod tls;

use sha2::{Digest, Sha256};
use sparsebak_agent::s3::{Client, Config, Credentials, Retry};
use std::time::Duration;

/// The gateway the suite started.
pub struct Rgw {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access: String,
    pub secret: String,
}

pub fn var(n: &str) -> String {
    std::env::var(n).unwrap_or_else(|_| {
        panic!("{n} is not set: these tests run against the real gateway tests/suite-s3.sh starts")
    })
}

pub fn rgw() -> Rgw {
    Rgw {
        endpoint: var("S3_ENDPOINT"),
        bucket: var("S3_BUCKET"),
        region: var("S3_REGION"),
        access: var("S3_ACCESS_KEY"),
        secret: var("S3_SECRET_KEY"),
    }
}

impl Rgw {
    /// `host:port` of the endpoint (for the proxy).
    pub fn authority(&self) -> String {
        self.endpoint.trim_start_matches("http://").to_string()
    }

    pub fn creds(&self) -> Credentials {
        keys(&self.access, &self.secret)
    }

    /// A client of `endpoint` with short timeouts and a quick retry budget.
    pub fn client_at(&self, endpoint: &str, bucket: &str, creds: Credentials) -> Client {
        let mut cfg = Config::new(endpoint, bucket, &self.region);
        cfg.connect_timeout = Duration::from_secs(2);
        cfg.io_timeout = Duration::from_secs(2);
        cfg.retry = Retry {
            attempts: 5,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        };
        Client::new(cfg, creds).unwrap()
    }

    pub fn client(&self) -> Client {
        self.client_at(&self.endpoint, &self.bucket, self.creds())
    }
}

pub fn keys(access: &str, secret: &str) -> Credentials {
    Credentials {
        access_key: access.into(),
        secret_key: secret.into(),
        session_token: None,
        source: "the test".into(),
    }
}

/// `len` bytes that differ per `seed` (SplitMix64), without a rand crate.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}
