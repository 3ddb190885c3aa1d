//! The client's operations on the real gateway, and the errors a user
//! must be able to act on: a missing bucket, wrong keys, revoked keys.

use super::{bytes, keys, rgw, sha};
use sparsebak_agent::s3::{PutOutcome, S3Error};

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn objects_round_trip_and_creates_are_exclusive() {
    let g = rgw();
    let c = g.client();
    c.check_bucket().unwrap();
    let key = "it/round-trip/odd key+~=&ü.bin";
    let data = bytes(5 << 20, 1);
    assert_eq!(c.put_new(key, &data).unwrap(), PutOutcome::Created);
    // A second create of the same name is refused and changes nothing.
    let other = bytes(1000, 2);
    assert_eq!(c.put_new(key, &other).unwrap(), PutOutcome::Exists);
    let back = c.get(key, 8 << 20).unwrap().expect("object is there");
    assert_eq!(sha(&back), sha(&data));
    let info = c.head(key).unwrap().unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(!info.etag.is_empty());
    let piece = c.get_range(key, 4096, 100).unwrap().unwrap();
    assert_eq!(piece, &data[4096..4196]);
    // Bounded: a reply longer than asked for is refused, not read whole.
    assert!(matches!(c.get(key, 1000), Err(S3Error::TooLarge { .. })));
    c.delete(key).unwrap();
    assert_eq!(c.get(key, 8 << 20).unwrap(), None);
    assert_eq!(c.head(key).unwrap(), None);
    c.delete(key).unwrap();
    // Unconditional put replaces.
    c.put(key, &other).unwrap();
    c.put(key, &data[..10]).unwrap();
    assert_eq!(c.get(key, 100).unwrap().unwrap(), &data[..10]);
    c.delete(key).unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn listings_page_through_every_key() {
    let g = rgw();
    let c = g.client();
    let names: Vec<String> = (0..7).map(|i| format!("it/list/k{i} &x")).collect();
    for (i, n) in names.iter().enumerate() {
        c.put_new(n, &bytes(i * 10, i as u64)).unwrap();
    }
    let mut seen = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let p = c.list_page("it/list/", next.as_deref(), 3).unwrap();
        pages += 1;
        seen.extend(p.objects.into_iter().map(|e| (e.key, e.size)));
        match p.next {
            Some(t) => next = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i as u64 * 10))
        .collect();
    assert_eq!(seen, want);
    let all = c.list_all("it/list/", 100).unwrap();
    let all: Vec<(String, u64)> = all.into_iter().map(|e| (e.key, e.size)).collect();
    assert_eq!(all, want);
    assert!(matches!(
        c.list_all("it/list/", 5),
        Err(S3Error::TooLarge { .. })
    ));
    assert!(c.list_all("it/nothing-here/", 10).unwrap().is_empty());
    for n in &names {
        c.delete(n).unwrap();
    }
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn a_missing_bucket_and_wrong_keys_are_clear_errors() {
    let g = rgw();
    let nb = g.client_at(&g.endpoint, "sparsebak-no-such-bucket", g.creds());
    for e in [
        nb.check_bucket().unwrap_err(),
        nb.put_new("k", b"x").unwrap_err(),
    ] {
        assert!(matches!(e, S3Error::NoSuchBucket { .. }), "{e:?}");
        let m = e.to_string();
        assert!(
            m.contains("bucket sparsebak-no-such-bucket does not exist at"),
            "{m}"
        );
    }
    let wrong = g.client_at(&g.endpoint, &g.bucket, keys(&g.access, "not-the-secret"));
    let e = wrong.put_new("it/wrong/k", b"x").unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, S3Error::Credentials { .. }), "{e:?}");
    assert!(
        m.contains("SignatureDoesNotMatch") && m.contains("wrong or revoked"),
        "{m}"
    );
    let unknown = g.client_at(&g.endpoint, &g.bucket, keys("NOSUCHKEY000", "x"));
    let e = unknown.get("it/wrong/k", 10).unwrap_err();
    assert!(e.to_string().contains("InvalidAccessKeyId"), "{e}");
    // Nothing was written with the wrong keys.
    assert_eq!(g.client().head("it/wrong/k").unwrap(), None);
}

/// radosgw-admin on the suite's cluster (CEPH_CONF).
fn admin(args: &[&str]) {
    let out = std::process::Command::new("radosgw-admin")
        .args(args)
        .output()
        .expect("radosgw-admin runs");
    assert!(
        out.status.success(),
        "radosgw-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn revoked_keys_are_refused_with_a_clear_error() {
    let g = rgw();
    let (id, secret) = ("SPARSEBAKREVOKED01", "revoked/secret/0001");
    admin(&[
        "key",
        "create",
        "--uid=sparsebak-test",
        "--key-type=s3",
        &format!("--access-key={id}"),
        &format!("--secret-key={secret}"),
    ]);
    let c = g.client_at(&g.endpoint, &g.bucket, keys(id, secret));
    c.put_new("it/revoked/before", b"fine").unwrap();
    admin(&[
        "key",
        "rm",
        "--uid=sparsebak-test",
        "--key-type=s3",
        &format!("--access-key={id}"),
    ]);
    // The gateway's user cache is told at once; allow it a moment.
    let mut last = None;
    for _ in 0..50 {
        match c.put_new("it/revoked/after", b"no") {
            Err(e @ S3Error::Credentials { .. }) => {
                last = Some(e);
                break;
            }
            other => {
                let _ = g.client().delete("it/revoked/after");
                last = None;
                assert!(other.is_ok(), "{other:?}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    let e = last.expect("the revoked key is refused");
    let m = e.to_string();
    assert!(m.contains("InvalidAccessKeyId") && m.contains(id), "{m}");
    g.client().delete("it/revoked/before").unwrap();
}
