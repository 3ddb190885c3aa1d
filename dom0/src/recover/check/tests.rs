use super::*;
use sparsebak_common::units::Bytes;

fn vol() -> VolName {
    VolName::new("vm-work").unwrap()
}
fn s(n: &str) -> SessionName {
    SessionName::new(n).unwrap()
}
fn cs() -> ChunkSize {
    ChunkSize::from_factor(1).unwrap()
}
const A: &str = "S_20260101-000000";
const B: &str = "S_20260102-000000";

fn info(name: &str, seq: u64, prev: Option<&str>, chunks: u64) -> SessionInfo {
    SessionInfo {
        name: s(name),
        sequence: seq,
        previous: prev.map(s),
        volsize: Bytes(3 * 65536 + 1),
        chunk_size: cs(),
        created_utc: "2026-01-01T00:00:00Z".into(),
        format: "folders".into(),
        chunks,
        stored_chunks: 1,
        stored_bytes: 100,
        manifest_sha256: "ab".repeat(32),
    }
}

fn json(i: &SessionInfo) -> Vec<u8> {
    serde_json::to_vec(i).unwrap()
}

fn edit(i: &SessionInfo, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v = serde_json::to_value(i).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn a_good_chain_passes() {
    let a = info(A, 0, None, 4);
    let got = session_info(&vol(), &s(A), &json(&a), None, cs()).unwrap();
    assert_eq!(got, a);
    let b = info(B, 3, Some(A), 1);
    session_info(&vol(), &s(B), &json(&b), Some(&a), cs()).unwrap();
}

#[test]
fn bad_infos_name_volume_session_and_problem() {
    let a = info(A, 0, None, 4);
    let b = info(B, 1, Some(A), 1);
    let cases: Vec<(Vec<u8>, Option<&SessionInfo>, &str)> = vec![
        (json(&info(A, 0, None, 4)), None, "names session S_20260101"),
        (json(&info(B, 0, None, 3)), None, "must record all 4 chunks"),
        (json(&info(B, 1, None, 1)), Some(&a), "previous is none"),
        (
            json(&info(B, 0, Some(A), 1)),
            Some(&a),
            "sequence 0 does not follow",
        ),
        (json(&info(B, 1, Some(A), 5)), Some(&a), "5 chunks recorded"),
        (
            edit(&b, |v| v["evil"] = 1.into()),
            Some(&a),
            "unknown field",
        ),
        (edit(&b, |v| v["format"] = "zip".into()), Some(&a), "format"),
        (
            edit(&b, |v| v["volsize"] = (1u64 << 60).into()),
            Some(&a),
            "over",
        ),
        (
            edit(&b, |v| v["chunk_size"] = (131072).into()),
            Some(&a),
            "chunk size",
        ),
        (
            edit(&b, |v| v["chunk_size"] = (1000).into()),
            Some(&a),
            "info.json",
        ),
        (
            edit(&b, |v| v["manifest_sha256"] = "AB".repeat(32).into()),
            Some(&a),
            "manifest_sha256",
        ),
        (
            edit(&b, |v| v["created_utc"] = "x".repeat(5000).into()),
            Some(&a),
            "created_utc",
        ),
        (
            edit(&b, |v| v["stored_chunks"] = 2.into()),
            Some(&a),
            "stored chunks",
        ),
        (
            edit(&b, |v| v["name"] = "S_../../x".into()),
            Some(&a),
            "info.json",
        ),
        (
            edit(&b, |v| {
                v.as_object_mut().unwrap().remove("previous");
            }),
            Some(&a),
            "missing",
        ),
        (b"[1,2]".to_vec(), Some(&a), "not a JSON object"),
    ];
    for (bytes, prev, needle) in cases {
        let e = session_info(&vol(), &s(B), &bytes, prev, cs()).unwrap_err();
        let m = format!("{e:#}");
        assert!(m.contains("volume vm-work, session S_2026010"), "{m}");
        assert!(m.contains(needle), "{needle:?} not in {m}");
    }
}

#[test]
fn volume_json_must_match() {
    let good = br#"{"name":"vm-work","uuid":"0b0e3c1e-1c36-4b8f-9f57-5d3c1d5b2a10","last":"S_20260102-000000"}"#;
    volume_state(&vol(), good, Some(&s(B))).unwrap();
    let e = volume_state(&vol(), good, Some(&s(A))).unwrap_err();
    assert!(
        format!("{e:#}").contains("newest committed session is S_20260101"),
        "{e:#}"
    );
    let other = br#"{"name":"other","uuid":"0b0e3c1e-1c36-4b8f-9f57-5d3c1d5b2a10","last":"S_20260102-000000"}"#;
    assert!(volume_state(&vol(), other, Some(&s(B))).is_err());
    let bad_uuid = br#"{"name":"vm-work","uuid":"x","last":"S_20260102-000000"}"#;
    assert!(volume_state(&vol(), bad_uuid, Some(&s(B))).is_err());
}

#[test]
fn session_lists_are_checked() {
    let ok = vec![s(A), s(B)];
    assert_eq!(session_list(&vol(), &ok).unwrap().len(), 2);
    // An invalid name ("S_x") never gets here: the reply listing it does
    // not decode (sparsebak_common::proto's tests).
    for bad in [vec![s(B), s(A)], vec![s(A), s(A)]] {
        assert!(session_list(&vol(), &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn manifests_are_checked_against_their_info() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("manifest");
    let h = "ab".repeat(32);
    let line = |a: u64| format!("{h} {h} x{a:016x}\n");
    let a = info(A, 0, None, 4);
    std::fs::write(
        &p,
        [
            line(0),
            line(65536),
            "0 x0000000000020000\n".into(),
            line(196608),
        ]
        .concat(),
    )
    .unwrap();
    manifest(&vol(), &a, &p).unwrap();
    for (text, needle) in [
        ([line(0), line(65536), line(131072)].concat(), "3 lines"),
        (
            [line(0), line(65536), line(131072), line(262144)].concat(),
            "is not a chunk",
        ),
        (
            [line(0), line(65537), line(131072), line(196608)].concat(),
            "is not a chunk",
        ),
        (
            [line(0), line(0), line(131072), line(196608)].concat(),
            "ascending",
        ),
        ("garbage\n".to_string(), "malformed"),
    ] {
        std::fs::write(&p, text).unwrap();
        let m = format!("{:#}", manifest(&vol(), &a, &p).unwrap_err());
        assert!(
            m.contains("volume vm-work, session S_20260101-000000: manifest"),
            "{m}"
        );
        assert!(m.contains(needle), "{needle} not in {m}");
    }
}
