//! The store misbehaving, through the fault proxy in front of the real
//! gateway: throttling (503 SlowDown) and 5xx are retried with backoff;
//! a stall past the timeout and connections cut mid-upload, after the
//! upload landed, or mid-download are retried; a store that keeps failing
//! is given up on with an error that says so. Every object that a call
//! reported written reads back sha256-equal; none is ever half-written.

use super::proxy::{Fault, Proxy};
use super::{bytes, rgw, sha};
use sparsebak_agent::s3::{PutOutcome, S3Error};
use std::time::{Duration, Instant};

fn count(seen: &[String], what: &str) -> usize {
    seen.iter().filter(|l| l.starts_with(what)).count()
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn throttling_and_5xx_are_retried_with_backoff() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let c = g.client_at(&p.endpoint(), &g.bucket, g.creds());
    let data = bytes(300_000, 11);
    p.script(&[
        Fault::Status(503, "SlowDown"),
        Fault::Status(500, "InternalError"),
        Fault::Status(503, "SlowDown"),
    ]);
    let t = Instant::now();
    assert_eq!(
        c.put_new("it/faults/slowdown", &data).unwrap(),
        PutOutcome::Created
    );
    // Backoff floors: 10 + 20 + 40 ms (half of 20, 40, 80).
    assert!(
        t.elapsed() >= Duration::from_millis(70),
        "{:?}",
        t.elapsed()
    );
    let seen = p.take_seen();
    assert_eq!(count(&seen, "PUT /"), 4, "{seen:?}");
    p.script(&[Fault::Status(502, "")]);
    assert_eq!(
        sha(&c.get("it/faults/slowdown", 1 << 20).unwrap().unwrap()),
        sha(&data)
    );
    assert_eq!(count(&p.take_seen(), "GET /"), 2);
    c.delete("it/faults/slowdown").unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn a_store_that_keeps_failing_is_given_up_on() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let c = g.client_at(&p.endpoint(), &g.bucket, g.creds());
    p.script(&[Fault::Status(503, "SlowDown"); 5]);
    let e = c.put_new("it/faults/never", b"data").unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, S3Error::GaveUp { attempts: 5, .. }), "{e:?}");
    assert!(
        m.contains("s3://") && m.contains("it/faults/never") && m.contains("SlowDown"),
        "{m}"
    );
    assert_eq!(g.client().head("it/faults/never").unwrap(), None);
    // Nobody listening at all.
    let dead = g.client_at("http://127.0.0.1:9", &g.bucket, g.creds());
    let e = dead.check_bucket().unwrap_err();
    assert!(matches!(e, S3Error::GaveUp { .. }), "{e:?}");
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn stalls_and_cut_uploads_are_retried_and_never_half_written() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let c = g.client_at(&p.endpoint(), &g.bucket, g.creds());
    let data = bytes(2 << 20, 12);
    p.script(&[
        Fault::Stall(Duration::from_secs(4)),
        Fault::CutMidUpload,
        Fault::CutMidUpload,
    ]);
    assert_eq!(
        c.put_new("it/faults/cut-upload", &data).unwrap(),
        PutOutcome::Created
    );
    let seen = p.take_seen();
    assert_eq!(count(&seen, "PUT /"), 4, "{seen:?}");
    let back = g
        .client()
        .get("it/faults/cut-upload", 4 << 20)
        .unwrap()
        .unwrap();
    assert_eq!(sha(&back), sha(&data));
    // A cut mid-upload of a create that cannot succeed leaves nothing.
    p.script(&[Fault::CutMidUpload; 5]);
    assert!(matches!(
        c.put_new("it/faults/cut-always", &data),
        Err(S3Error::GaveUp { .. })
    ));
    assert_eq!(g.client().head("it/faults/cut-always").unwrap(), None);
    c.delete("it/faults/cut-upload").unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn a_create_that_landed_before_its_answer_was_lost_is_ours() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let c = g.client_at(&p.endpoint(), &g.bucket, g.creds());
    let data = bytes(100_000, 13);
    // The create reaches the gateway, the answer is lost; the retry is
    // refused (412), and reading back equal bytes shows it was ours.
    p.script(&[Fault::CutAfterForward]);
    assert_eq!(
        c.put_new("it/faults/landed", &data).unwrap(),
        PutOutcome::Created
    );
    let seen = p.take_seen();
    assert_eq!(count(&seen, "PUT /"), 2, "{seen:?}");
    assert_eq!(count(&seen, "GET /"), 1, "{seen:?}");
    // Someone else's object under the name stays theirs.
    p.script(&[Fault::CutAfterForward]);
    let other = bytes(100_000, 14);
    assert_eq!(
        c.put_new("it/faults/landed", &other).unwrap(),
        PutOutcome::Exists
    );
    assert_eq!(
        sha(&c.get("it/faults/landed", 1 << 20).unwrap().unwrap()),
        sha(&data)
    );
    c.delete("it/faults/landed").unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn a_cut_download_is_read_again() {
    let g = rgw();
    let p = Proxy::start(&g.authority());
    let c = g.client_at(&p.endpoint(), &g.bucket, g.creds());
    let data = bytes(3 << 20, 15);
    c.put_new("it/faults/download", &data).unwrap();
    p.take_seen();
    p.script(&[Fault::CutMidDownload, Fault::Stall(Duration::from_secs(4))]);
    let back = c.get("it/faults/download", 4 << 20).unwrap().unwrap();
    assert_eq!(sha(&back), sha(&data));
    assert_eq!(count(&p.take_seen(), "GET /"), 3);
    p.script(&[Fault::CutMidDownload]);
    let page = c.list_page("it/faults/", None, 10).unwrap();
    assert!(page.objects.iter().any(|e| e.key == "it/faults/download"));
    c.delete("it/faults/download").unwrap();
}
