//! One S3 request with its retries: sign, send, read the bounded answer;
//! retry 5xx, 429, SlowDown, RequestTimeout, timeouts and cut connections
//! with backoff; turn refused keys and a missing bucket into their own
//! errors. Every other answer goes back to the operation that asked.

use super::client::Client;
use super::error::{S3Error, S3Result};
use super::req::{Reply, Req, MAX_ERROR_BODY};
use super::retry::{retryable_status, splitmix};
use super::sigv4::{self, Signer, ToSign};
use super::xml;
use std::io::Read;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// 403 codes that mean the keys themselves are refused.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UserSuspended",
    "ExpiredToken",
    "InvalidToken",
    "AccessDenied",
];

/// One attempt's failure: worth another, or final.
enum Failed {
    Retry(String),
    Final(S3Error),
}

impl Client {
    pub(super) fn call(&self, r: Req<'_>) -> S3Result<Reply> {
        let start = Instant::now();
        let policy = &self.cfg.retry;
        let payload = sigv4::sha256_hex(r.body);
        let mut n = 0;
        loop {
            n += 1;
            let last = match self.attempt(&r, &payload) {
                Ok(mut reply) => {
                    reply.attempts = n;
                    return Ok(reply);
                }
                Err(Failed::Final(e)) => return Err(e),
                Err(Failed::Retry(why)) => why,
            };
            if n >= policy.attempts.max(1) {
                return Err(S3Error::GaveUp {
                    op: r.op,
                    key: self.shown(r.key),
                    attempts: n,
                    waited: start.elapsed(),
                    last,
                });
            }
            let seed = splitmix(self.seed.get());
            self.seed.set(seed);
            std::thread::sleep(policy.delay(n, seed));
        }
    }

    /// The path as sent and signed: `/bucket[/key]`, encoded.
    fn path(&self, key: &str) -> String {
        let raw = if key.is_empty() {
            format!("/{}", self.cfg.bucket)
        } else {
            format!("/{}/{}", self.cfg.bucket, key)
        };
        sigv4::encode_path(&raw)
    }

    fn shown(&self, key: &str) -> String {
        format!("s3://{}/{}", self.cfg.bucket, key)
    }

    fn attempt(&self, r: &Req<'_>, payload: &str) -> Result<Reply, Failed> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let date = sigv4::amz_date(now);
        let mut headers = r.headers.clone();
        headers.push(("host".into(), self.host.clone()));
        headers.push(("x-amz-date".into(), date.clone()));
        headers.push(("x-amz-content-sha256".into(), payload.to_string()));
        if let Some(t) = &self.creds.session_token {
            headers.push(("x-amz-security-token".into(), t.clone()));
        }
        let path = self.path(r.key);
        let signer = Signer {
            access_key: &self.creds.access_key,
            secret_key: &self.creds.secret_key,
            region: &self.cfg.region,
            amz_date: &date,
        };
        let auth = signer.authorization(&ToSign {
            method: r.method,
            path: &path,
            query: &r.query,
            headers: &headers,
            payload_sha256: payload,
        });
        let query = sigv4::canonical_query(&r.query);
        let url = if query.is_empty() {
            format!("{}{path}", self.cfg.endpoint)
        } else {
            format!("{}{path}?{query}", self.cfg.endpoint)
        };
        let mut q = self.agent.request(r.method, &url);
        for (k, v) in &headers {
            q = q.set(k, v);
        }
        q = q.set("authorization", &auth);
        let sent = if r.method == "PUT" {
            q.send_bytes(r.body)
        } else {
            q.call()
        };
        let resp = match sent {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) if is_tls_refusal(&t) => {
                return Err(Failed::Final(S3Error::Tls {
                    endpoint: self.cfg.endpoint.clone(),
                    why: t.to_string(),
                }))
            }
            Err(ureq::Error::Transport(t)) => return Err(Failed::Retry(t.to_string())),
        };
        self.answer(r, resp)
    }

    /// Read an answer (bounded) and sort it: success or a status for the
    /// caller, retry, or a final error.
    fn answer(&self, r: &Req<'_>, resp: ureq::Response) -> Result<Reply, Failed> {
        let status = resp.status();
        let etag = resp.header("etag").map(str::to_string);
        let length = resp.header("content-length").and_then(|v| v.parse().ok());
        let date = resp.header("date").and_then(super::time::parse_http_date);
        let max = if (200..300).contains(&status) {
            r.max_reply
        } else {
            MAX_ERROR_BODY
        };
        let mut body = Vec::new();
        if r.method != "HEAD" {
            // A cut or stalled download is retried like any transport failure.
            if let Err(e) = resp.into_reader().take(max + 1).read_to_end(&mut body) {
                return Err(Failed::Retry(format!("reading the answer: {e}")));
            }
            if body.len() as u64 > max {
                return Err(Failed::Final(S3Error::TooLarge {
                    op: r.op,
                    key: self.shown(r.key),
                    max,
                }));
            }
            let short = length.is_some_and(|l| l != body.len() as u64);
            if (200..300).contains(&status) && (short || !(r.complete)(&body)) {
                return Err(Failed::Retry(format!(
                    "the answer was cut short ({} bytes)",
                    body.len()
                )));
            }
        }
        let (code, message) = error_fields(status, &body);
        if retryable_status(status, &code) {
            return Err(Failed::Retry(format!("HTTP {status} {code} {message}")));
        }
        if status == 403 && (CREDENTIAL_CODES.contains(&code.as_str()) || body.is_empty()) {
            return Err(Failed::Final(S3Error::Credentials {
                endpoint: self.cfg.endpoint.clone(),
                key_id: self.creds.access_key.clone(),
                source_of: self.creds.source.clone(),
                code,
                message,
            }));
        }
        if code == "NoSuchBucket" || (status == 404 && r.key.is_empty()) {
            return Err(Failed::Final(S3Error::NoSuchBucket {
                bucket: self.cfg.bucket.clone(),
                endpoint: self.cfg.endpoint.clone(),
            }));
        }
        Ok(Reply {
            status,
            etag,
            length,
            date,
            body,
            attempts: 0,
        })
    }

    /// The error for an answer the operation did not expect.
    pub(super) fn http_error(&self, op: &'static str, key: &str, r: &Reply) -> S3Error {
        let (code, message) = error_fields(r.status, &r.body);
        let message = if code == "RequestTimeTooSkewed" {
            format!("{message} (the clock where the agent runs is off)")
        } else {
            message
        };
        S3Error::Http {
            op,
            key: self.shown(key),
            status: r.status,
            code,
            message,
        }
    }
}

/// A certificate the TLS client refused: retrying cannot change that.
fn is_tls_refusal(t: &ureq::Transport) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(err) = e {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return matches!(r, rustls::Error::InvalidCertificate(_));
            }
        }
        e = err.source();
    }
    false
}

/// `<Code>` and `<Message>` of an S3 error body (bounded, best effort:
/// an error that is not S3's XML still gets its status reported).
pub(crate) fn error_fields(status: u16, body: &[u8]) -> (String, String) {
    if (200..300).contains(&status) {
        return (String::new(), String::new());
    }
    let s = String::from_utf8_lossy(body);
    let get = |t: &str| xml::first(&s, t).ok().flatten().unwrap_or_default();
    let clip = |v: String| v.chars().take(300).collect::<String>();
    (clip(get("Code")), clip(get("Message")))
}
