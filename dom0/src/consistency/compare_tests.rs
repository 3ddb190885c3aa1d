use super::*;

fn s(ts: &str) -> SessionName {
    SessionName::from_timestamp(ts).unwrap()
}

fn vol() -> VolName {
    VolName::new("db").unwrap()
}

fn local(names: &[(&str, &str)]) -> LocalVolume {
    LocalVolume {
        sessions: names.iter().map(|(n, d)| (s(n), d.to_string())).collect(),
        volume_sha256: Some("v".repeat(64)),
    }
}

fn dest(names: &[(&str, Option<&str>)]) -> DestSessions {
    DestSessions {
        sessions: names
            .iter()
            .map(|(n, d)| SessionDigest {
                name: s(n),
                info_sha256: d.map(str::to_string),
                problem: d.is_none().then(|| "missing".to_string()),
            })
            .collect(),
        volume_sha256: Some("v".repeat(64)),
    }
}

const A: &str = "20261101-000000";
const B: &str = "20261102-000000";
const C: &str = "20261103-000000";

#[test]
fn equal_views_have_no_problem() {
    let l = local(&[(A, "a"), (B, "b")]);
    assert!(compare(&vol(), &l, &dest(&[(A, Some("a")), (B, Some("b"))])).is_empty());
}

#[test]
fn a_lost_newest_session_is_named_as_such() {
    let l = local(&[(A, "a"), (B, "b")]);
    let p = compare(&vol(), &l, &dest(&[(A, Some("a"))]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].kind, Kind::Missing);
    assert_eq!(p[0].session, Some(s(B)));
    assert!(p[0].to_string().contains("newest session"), "{}", p[0]);
    assert!(p[0]
        .to_string()
        .starts_with("volume db, session 20261102-000000:"));
}

#[test]
fn a_replaced_info_is_altered_and_a_missing_info_is_missing() {
    let l = local(&[(A, "a"), (B, "b")]);
    let p = compare(&vol(), &l, &dest(&[(A, Some("old")), (B, None)]));
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        (p[0].kind, p[0].session.clone()),
        (Kind::Altered, Some(s(A)))
    );
    assert!(p[0].message.contains("older copy"), "{}", p[0]);
    assert_eq!(
        (p[1].kind, p[1].session.clone()),
        (Kind::Missing, Some(s(B)))
    );
    assert!(p[1].message.contains("info.json"), "{}", p[1]);
}

#[test]
fn an_unreadable_info_says_why() {
    let l = local(&[(A, "a")]);
    let mut d = dest(&[(A, None)]);
    d.sessions[0].problem = Some("cannot be read: not a regular file".into());
    let p = compare(&vol(), &l, &d);
    assert_eq!(p[0].kind, Kind::Unreadable);
    assert!(p[0].message.contains("not a regular file"), "{}", p[0]);
}

#[test]
fn a_pruned_session_on_the_destination_is_stale_a_newer_one_is_not() {
    let l = local(&[(A, "a"), (C, "c")]);
    let p = compare(
        &vol(),
        &l,
        &dest(&[(A, Some("a")), (B, Some("b")), (C, Some("c"))]),
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].kind, p[0].session.clone()), (Kind::Stale, Some(s(B))));
    // A session newer than dom0's newest: the agent committed it, dom0 did
    // not (a crash between the two commits); volume.json then names it.
    let l = local(&[(A, "a"), (B, "b")]);
    let mut d = dest(&[(A, Some("a")), (B, Some("b")), (C, Some("c"))]);
    d.volume_sha256 = Some("other".into());
    assert!(compare(&vol(), &l, &d).is_empty());
}

#[test]
fn an_older_volume_json_is_stale_and_a_missing_one_missing() {
    let l = local(&[(A, "a")]);
    let mut d = dest(&[(A, Some("a"))]);
    d.volume_sha256 = Some("w".repeat(64));
    let p = compare(&vol(), &l, &d);
    assert_eq!(
        (p.len(), p[0].kind, p[0].session.clone()),
        (1, Kind::Stale, None)
    );
    d.volume_sha256 = None;
    assert_eq!(compare(&vol(), &l, &d)[0].kind, Kind::Missing);
}

#[test]
fn a_volume_dom0_never_sent_is_not_checked_against_its_volume_json() {
    let l = LocalVolume::default();
    let mut d = dest(&[]);
    d.volume_sha256 = None;
    assert!(compare(&vol(), &l, &d).is_empty());
}
