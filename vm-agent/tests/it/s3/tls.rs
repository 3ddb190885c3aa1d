//! TLS to the real gateway (its `ssl_endpoint`, with a certificate from the
//! suite's throwaway CA): a client given that CA works; one relying on the
//! public roots built into the agent refuses the certificate at once, with
//! an error that says what to do, and is not retried.

use super::{bytes, rgw, sha};
use sparsebak_agent::s3::{Client, PutOutcome, S3Error};
use std::time::Duration;

fn tls_client(ca: Option<&str>) -> Result<Client, S3Error> {
    let g = rgw();
    let mut cfg =
        sparsebak_agent::s3::Config::new(&super::var("S3_TLS_ENDPOINT"), &g.bucket, &g.region);
    cfg.io_timeout = Duration::from_secs(5);
    cfg.retry.base = Duration::from_millis(20);
    cfg.ca_file = ca.map(Into::into);
    Client::new(cfg, g.creds())
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn objects_round_trip_over_tls_with_the_stores_ca() {
    let c = tls_client(Some(&super::var("S3_CA_FILE"))).unwrap();
    let data = bytes(1 << 20, 21);
    assert_eq!(c.put_new("it/tls/obj", &data).unwrap(), PutOutcome::Created);
    assert_eq!(
        sha(&c.get("it/tls/obj", 2 << 20).unwrap().unwrap()),
        sha(&data)
    );
    c.delete("it/tls/obj").unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn an_untrusted_certificate_is_refused_at_once() {
    let c = tls_client(None).unwrap();
    // Final, not retried: a retried failure would end as GaveUp.
    let e = c.check_bucket().unwrap_err();
    assert!(matches!(e, S3Error::Tls { .. }), "{e:?}");
    assert!(e.to_string().contains("CA file"), "{e}");
    // A CA file that holds no certificate is a configuration error.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let e = tls_client(Some(empty.path().to_str().unwrap()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("no certificate"), "{e}");
}
