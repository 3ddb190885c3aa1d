//! AWS Signature Version 4 for S3 requests (header form), from the
//! published algorithm: canonical request, string to sign, derived key,
//! HMAC-SHA256 (RustCrypto `hmac` + `sha2`). Small enough to read whole;
//! pinned by AWS's own worked example and exercised against a real RADOS
//! Gateway, which refuses a wrong signature (tests/suite-s3.sh).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The payload hash of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is signed: the request line's parts and the headers to sign
/// (names lower-case; `host`, `x-amz-date` and `x-amz-content-sha256`
/// among them).
pub struct ToSign<'a> {
    pub method: &'a str,
    /// The path as sent, already URI-encoded (see [`encode_path`]).
    pub path: &'a str,
    /// Query parameters, not yet encoded.
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    /// Lower-case hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// The secret half of a signature: key id, secret, region, and when.
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the request's `x-amz-date`.
    pub amz_date: &'a str,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// URI-encode per SigV4: every byte but `A-Za-z0-9-_.~` as `%XX`
/// (upper-case hex); `/` kept when `keep_slash` (object key paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// An S3 path (`/bucket/key`), encoded once: as sent and as signed.
pub fn encode_path(raw: &str) -> String {
    uri_encode(raw, true)
}

/// The canonical query string: encoded pairs sorted by name, then value.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

impl Signer<'_> {
    fn scope(&self) -> String {
        format!("{}/{}/s3/aws4_request", &self.amz_date[..8], self.region)
    }

    /// The `Authorization` header's value for request `r`.
    pub fn authorization(&self, r: &ToSign<'_>) -> String {
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        headers.sort();
        let mut canon_headers = String::new();
        for (k, v) in &headers {
            let _ = writeln!(canon_headers, "{k}:{v}");
        }
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            r.method,
            r.path,
            canonical_query(r.query),
            canon_headers,
            signed,
            r.payload_sha256
        );
        let scope = self.scope();
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            scope,
            sha256_hex(canonical.as_bytes())
        );
        let k = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            &self.amz_date.as_bytes()[..8],
        );
        let k = hmac(&k, self.region.as_bytes());
        let k = hmac(&k, b"s3");
        let k = hmac(&k, b"aws4_request");
        let sig = hex(&hmac(&k, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
            self.access_key
        )
    }
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC), without a
/// date-time crate: days to civil date by Howard Hinnant's algorithm.
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// AWS's worked example "GET Object" (S3 API reference, "Examples:
    /// Signature Calculations in AWS Signature Version 4").
    #[test]
    fn aws_get_object_example() {
        let s = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            amz_date: "20130524T000000Z",
        };
        let headers = [
            h("Host", "examplebucket.s3.amazonaws.com"),
            h("Range", "bytes=0-9"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let auth = s.authorization(&ToSign {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// AWS's worked example "GET Bucket (List Objects)": a sorted, encoded query.
    #[test]
    fn aws_list_objects_example() {
        let s = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            amz_date: "20130524T000000Z",
        };
        let headers = [
            h("Host", "examplebucket.s3.amazonaws.com"),
            h("x-amz-content-sha256", EMPTY_SHA256),
            h("x-amz-date", "20130524T000000Z"),
        ];
        let query = [h("prefix", "J"), h("max-keys", "2")];
        let auth = s.authorization(&ToSign {
            method: "GET",
            path: "/",
            query: &query,
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
        });
        assert!(
            auth.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(uri_encode("a b/c~d+é", true), "a%20b/c~d%2B%C3%A9");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(
            canonical_query(&[h("list-type", "2"), h("continuation-token", "x/y=")]),
            "continuation-token=x%2Fy%3D&list-type=2"
        );
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400 + 86399), "20000229T235959Z");
    }
}
