//! The writer lease (docs/FORMAT.md §21.4) on the real gateway: two
//! writers racing for it, release, renewal, and a crashed or stalled
//! holder whose lease runs out by the store's clock.

use super::rgw;
use sparsebak_agent::s3::lease::{self, Record, Taken};
use sparsebak_agent::s3::S3Error;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn ours(t: Taken<'_>) -> lease::Lease<'_> {
    match t {
        Taken::Ours(l) => l,
        Taken::Locked { holder, .. } => panic!("locked by {holder:?}"),
    }
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn of_two_racing_writers_exactly_one_gets_the_lease() {
    let prefix = "it/lease-race/";
    let start = Arc::new(Barrier::new(2));
    let runs: Vec<_> = (0..2)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || {
                let g = rgw();
                let c = g.client();
                let me = Record::mine(&format!("writer{i}"), 60).unwrap();
                start.wait();
                match lease::take(&c, prefix, me.clone()).unwrap() {
                    Taken::Ours(l) => {
                        std::thread::sleep(Duration::from_millis(500));
                        l.check().unwrap();
                        l.release().unwrap();
                        (true, me.owner)
                    }
                    Taken::Locked { holder, .. } => (false, holder.owner),
                }
            })
        })
        .collect::<Vec<_>>();
    // Both threads run before either is joined (they meet at the barrier).
    let runs: Vec<(bool, String)> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    let winners = runs.iter().filter(|(won, _)| *won).count();
    assert_eq!(winners, 1, "{runs:?}");
    let (_, winner) = runs.iter().find(|(w, _)| *w).unwrap();
    let (_, seen) = runs.iter().find(|(w, _)| !*w).unwrap();
    assert_eq!(winner, seen, "the loser names the winner as holder");
    // Released: the next writer takes it at once.
    let g = rgw();
    let c = g.client();
    let l = ours(lease::take(&c, prefix, Record::mine("next", 60).unwrap()).unwrap());
    l.release().unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn renewal_keeps_one_record_and_the_lease() {
    let g = rgw();
    let c = g.client();
    let prefix = "it/lease-renew/";
    let mut l = ours(lease::take(&c, prefix, Record::mine("a", 60).unwrap()).unwrap());
    let first = l.generation();
    l.renew().unwrap();
    l.renew().unwrap();
    assert_eq!(l.generation(), first + 2);
    let keys: Vec<String> = c
        .list_all(&format!("{prefix}lock/"), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec![format!("{prefix}lock/{:08x}", first + 2)]);
    let other = lease::take(&c, prefix, Record::mine("b", 60).unwrap()).unwrap();
    match other {
        Taken::Locked { holder, .. } => {
            assert_eq!((holder.host.as_str(), holder.held), ("a", true))
        }
        Taken::Ours(_) => panic!("a renewed lease was taken"),
    }
    l.check().unwrap();
    l.release().unwrap();
}

#[test]
#[ignore = "needs the real RADOS Gateway: tests/suite-s3.sh"]
fn a_crashed_holder_loses_the_lease_when_it_runs_out() {
    let g = rgw();
    let (c1, c2) = (g.client(), g.client());
    let prefix = "it/lease-expire/";
    let a = ours(lease::take(&c1, prefix, Record::mine("crashed", 2).unwrap()).unwrap());
    // "a" never renews nor releases: it crashed (or stalled).
    let t = Instant::now();
    let b = loop {
        match lease::take(&c2, prefix, Record::mine("b", 60).unwrap()).unwrap() {
            Taken::Ours(l) => break l,
            Taken::Locked { holder, .. } => assert_eq!(holder.host, "crashed"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "the lease never ran out"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "taken before the lease ran out: {:?}",
        t.elapsed()
    );
    // The stalled holder finds out before writing more, and cannot renew.
    let e = a.check().unwrap_err();
    assert!(matches!(e, S3Error::LeaseLost { .. }), "{e:?}");
    assert!(e.to_string().contains("b (pid"), "{e}");
    // Releasing a lost lease is a no-op that leaves the new holder alone.
    a.release().unwrap();
    b.check().unwrap();
    b.release().unwrap();
}
