//! The S3 operations the object layout needs, each one request with
//! retries: conditional create, put, get (whole or a range, bounded), head,
//! delete, list. Every non-success answer becomes an [`S3Error`] that says
//! what to fix, or a value the caller branches on (`None` for a missing
//! object, [`PutOutcome::Exists`] for a refused create).

use super::creds::Credentials;
use super::error::{S3Error, S3Result};
use super::req::{any_body, Req, MAX_ERROR_BODY};
use super::retry::Retry;
use super::{time, xml};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the store is and how patient to be with it.
#[derive(Clone, Debug)]
pub struct Config {
    /// `http://host[:port]` or `https://host[:port]`, nothing after it.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub connect_timeout: Duration,
    /// Longest silence while sending or receiving.
    pub io_timeout: Duration,
    pub retry: Retry,
    /// Trust only the CA certificates in this PEM file (a store with its
    /// own CA); without it, the public web PKI roots built into the agent.
    pub ca_file: Option<PathBuf>,
}

impl Config {
    pub fn new(endpoint: &str, bucket: &str, region: &str) -> Config {
        Config {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
            region: region.to_string(),
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(60),
            retry: Retry::default(),
            ca_file: None,
        }
    }
}

/// A created object, or one that was there already (`If-None-Match: *`).
#[derive(Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Exists,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub etag: String,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    /// Last-Modified, seconds since the epoch by the store's clock.
    pub modified: u64,
}

/// One page of a listing in key order, where to go on, and the store's
/// clock when it answered (its `Date`).
#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<Entry>,
    pub next: Option<String>,
    pub server_time: Option<u64>,
}

/// Largest listing body read.
const MAX_LIST_BODY: u64 = 16 << 20;

pub struct Client {
    pub(super) cfg: Config,
    pub(super) creds: Credentials,
    pub(super) agent: ureq::Agent,
    /// `host[:port]`, as sent and signed.
    pub(super) host: String,
    /// Jitter state (see [`super::retry`]).
    pub(super) seed: Cell<u64>,
}

impl Client {
    pub fn new(cfg: Config, creds: Credentials) -> S3Result<Client> {
        let host = host_of(&cfg.endpoint)?;
        if cfg.bucket.is_empty() || cfg.bucket.contains('/') {
            return Err(S3Error::Config(format!("bad bucket name {:?}", cfg.bucket)));
        }
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(cfg.connect_timeout)
            .timeout_read(cfg.io_timeout)
            .timeout_write(cfg.io_timeout)
            .redirects(0);
        if let Some(ca) = &cfg.ca_file {
            agent = agent.tls_config(Arc::new(tls_trusting(ca)?));
        }
        let agent = agent.build();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let seed = now.as_nanos() as u64 ^ u64::from(std::process::id());
        Ok(Client {
            cfg,
            creds,
            agent,
            host,
            seed: Cell::new(seed),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The bucket exists and the keys may list it.
    pub fn check_bucket(&self) -> S3Result<()> {
        self.list_page("", None, 1).map(|_| ())
    }

    /// Create `key` only if no object has that name (`If-None-Match: *`).
    /// A retry after an attempt that may have landed, refused because the
    /// object now exists, reads it back: equal bytes mean it was ours.
    pub fn put_new(&self, key: &str, body: &[u8]) -> S3Result<PutOutcome> {
        let r = self.call(self.put_req("put", key, body, true))?;
        match r.status {
            200 => Ok(PutOutcome::Created),
            412 if r.attempts > 1 => match self.get(key, body.len() as u64)? {
                Some(b) if b == body => Ok(PutOutcome::Created),
                _ => Ok(PutOutcome::Exists),
            },
            412 => Ok(PutOutcome::Exists),
            _ => Err(self.http_error("put", key, &r)),
        }
    }

    /// Write `key`, replacing any object of that name.
    pub fn put(&self, key: &str, body: &[u8]) -> S3Result<()> {
        let r = self.call(self.put_req("put", key, body, false))?;
        match r.status {
            200 => Ok(()),
            _ => Err(self.http_error("put", key, &r)),
        }
    }

    fn put_req<'a>(&self, op: &'static str, key: &'a str, body: &'a [u8], new: bool) -> Req<'a> {
        let mut headers = Vec::new();
        if new {
            headers.push(("if-none-match".to_string(), "*".to_string()));
        }
        Req {
            op,
            method: "PUT",
            key,
            query: Vec::new(),
            headers,
            body,
            max_reply: MAX_ERROR_BODY,
            complete: any_body,
        }
    }

    /// The whole object, `None` if there is none; longer than `max` is an error.
    pub fn get(&self, key: &str, max: u64) -> S3Result<Option<Vec<u8>>> {
        self.get_inner(key, None, max)
    }

    /// `len` bytes from `offset` (fewer at the object's end).
    pub fn get_range(&self, key: &str, offset: u64, len: u64) -> S3Result<Option<Vec<u8>>> {
        if len == 0 {
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes={}-{}", offset, offset + len - 1);
        self.get_inner(key, Some(range), len)
    }

    fn get_inner(&self, key: &str, range: Option<String>, max: u64) -> S3Result<Option<Vec<u8>>> {
        let headers = range
            .into_iter()
            .map(|r| ("range".to_string(), r))
            .collect();
        let r = self.call(Req {
            op: "get",
            method: "GET",
            key,
            query: Vec::new(),
            headers,
            body: &[],
            max_reply: max,
            complete: any_body,
        })?;
        match r.status {
            200 | 206 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(self.http_error("get", key, &r)),
        }
    }

    /// Size and ETag, `None` if there is no such object.
    pub fn head(&self, key: &str) -> S3Result<Option<ObjectInfo>> {
        let r = self.call(Req {
            op: "head",
            method: "HEAD",
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
            max_reply: 0,
            complete: any_body,
        })?;
        match r.status {
            200 => Ok(Some(ObjectInfo {
                size: r.length.unwrap_or(0),
                etag: r.etag.unwrap_or_default(),
            })),
            404 => Ok(None),
            _ => Err(self.http_error("head", key, &r)),
        }
    }

    /// Remove `key`; a missing object is not an error (deletes are retried).
    pub fn delete(&self, key: &str) -> S3Result<()> {
        let r = self.call(Req {
            op: "delete",
            method: "DELETE",
            key,
            query: Vec::new(),
            headers: Vec::new(),
            body: &[],
            max_reply: MAX_ERROR_BODY,
            complete: any_body,
        })?;
        match r.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.http_error("delete", key, &r)),
        }
    }

    /// One page (at most `max_keys`, ≤ 1000) of the keys under `prefix`.
    pub fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max_keys: u32,
    ) -> S3Result<ListPage> {
        let mut query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("prefix".to_string(), prefix.to_string()),
            ("max-keys".to_string(), max_keys.min(1000).to_string()),
        ];
        if let Some(t) = after {
            query.push(("continuation-token".to_string(), t.to_string()));
        }
        let r = self.call(Req {
            op: "list",
            method: "GET",
            key: "",
            query,
            headers: Vec::new(),
            body: &[],
            max_reply: MAX_LIST_BODY,
            complete: whole_list,
        })?;
        if r.status != 200 {
            return Err(self.http_error("list", prefix, &r));
        }
        let mut page = parse_list(&r.body).map_err(|what| S3Error::Malformed {
            op: "list",
            key: prefix.to_string(),
            what,
        })?;
        page.server_time = r.date;
        Ok(page)
    }

    /// Every key under `prefix`, at most `max` of them.
    pub fn list_all(&self, prefix: &str, max: usize) -> S3Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.list_page(prefix, next.as_deref(), 1000)?;
            out.extend(page.objects);
            if out.len() > max {
                return Err(S3Error::TooLarge {
                    op: "list",
                    key: prefix.to_string(),
                    max: max as u64,
                });
            }
            match page.next {
                Some(t) => next = Some(t),
                None => return Ok(out),
            }
        }
    }
}

/// [`parse_list`] for the fuzz target (`crate::fuzzing`).
#[doc(hidden)]
pub fn fuzz_parse_list(body: &[u8]) -> Result<Vec<(String, u64, u64)>, String> {
    let p = parse_list(body)?;
    Ok(p.objects
        .into_iter()
        .map(|e| (e.key, e.size, e.modified))
        .collect())
}

/// A listing ends with its root's end tag; one cut short at a `</Contents>`
/// would otherwise parse as a shorter listing.
fn whole_list(body: &[u8]) -> bool {
    body.trim_ascii_end().ends_with(b"</ListBucketResult>")
}

fn parse_list(body: &[u8]) -> Result<ListPage, String> {
    if !whole_list(body) {
        return Err("the listing is cut short".into());
    }
    let s = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    if !s.contains("<ListBucketResult") {
        return Err("not a ListBucketResult".into());
    }
    let mut page = ListPage::default();
    for c in xml::blocks(s, "Contents")? {
        let key = xml::first(c, "Key")?.ok_or("an entry without <Key>")?;
        let size = xml::first(c, "Size")?
            .and_then(|v| v.parse().ok())
            .ok_or("an entry without a valid <Size>")?;
        let modified = xml::first(c, "LastModified")?
            .and_then(|v| time::parse_iso8601(&v))
            .ok_or("an entry without a valid <LastModified>")?;
        page.objects.push(Entry {
            key,
            size,
            modified,
        });
    }
    if xml::first(s, "IsTruncated")?.as_deref() == Some("true") {
        let t = xml::first(s, "NextContinuationToken")?
            .ok_or("a truncated listing without NextContinuationToken")?;
        page.next = Some(t);
    }
    Ok(page)
}

/// A TLS client configuration that trusts exactly the CA certificates in
/// the PEM file `ca`.
fn tls_trusting(ca: &Path) -> S3Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = |e: String| S3Error::Config(format!("CA file {}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        let c = c.map_err(|e| bad(e.to_string()))?;
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    // ring, as ureq itself configures rustls (rtls.rs): the provider it
    // links anyway. rustls 0.23.48 deprecates it for lacking post-quantum
    // key exchange, which needs aws-lc-rs (a large C library) instead.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `host[:port]` of an `http(s)://` endpoint with nothing after it.
fn host_of(endpoint: &str) -> S3Result<String> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))
        .ok_or_else(|| {
            S3Error::Config(format!("endpoint {endpoint:?} is not http:// or https://"))
        })?;
    let ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !ok {
        return Err(S3Error::Config(format!(
            "endpoint {endpoint:?} must be a scheme and a host[:port], nothing else"
        )));
    }
    Ok(rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_cut_short_is_never_a_shorter_listing() {
        let whole = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>\
            <Contents><Key>a</Key><LastModified>1970-01-01T00:00:09.000Z</LastModified><Size>1</Size></Contents>\
            <Contents><Key>b</Key><LastModified>1970-01-01T00:01:00Z</LastModified><Size>2</Size></Contents></ListBucketResult>\n";
        let p = parse_list(whole.as_bytes()).unwrap();
        let got: Vec<_> = p
            .objects
            .iter()
            .map(|e| (e.key.as_str(), e.size, e.modified))
            .collect();
        assert_eq!(got, vec![("a", 1, 9), ("b", 2, 60)]);
        assert_eq!(p.next, None);
        let cut = &whole[..whole.find("<Contents><Key>b").unwrap()];
        assert!(!whole_list(cut.as_bytes()));
        assert!(parse_list(cut.as_bytes()).is_err());
        let trunc = whole.replace("<IsTruncated>false", "<IsTruncated>true");
        assert!(parse_list(trunc.as_bytes())
            .unwrap_err()
            .contains("NextContinuationToken"));
    }

    #[test]
    fn endpoints_are_a_scheme_and_a_host() {
        assert_eq!(host_of("http://127.0.0.1:7480").unwrap(), "127.0.0.1:7480");
        assert_eq!(host_of("https://s3.example.org").unwrap(), "s3.example.org");
        for bad in [
            "ftp://x",
            "http://",
            "http://h/path",
            "http://u@h",
            "s3.example.org",
        ] {
            assert!(host_of(bad).is_err(), "{bad}");
        }
    }
}
