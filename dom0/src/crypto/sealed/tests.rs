use super::*;
use crate::crypto::MasterKey;

fn keys() -> ArchiveKeys {
    ArchiveKeys::derive(&MasterKey::from_bytes([9; 32]), "uuid-1")
}

const MAN: Place<'static> = Place {
    kind: MetaKind::Manifest,
    context: "vabc/S_20260101-000000",
};

fn pseudo(n: usize) -> Vec<u8> {
    let mut x = 0x9e3779b97f4a7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn round_trip_sizes_around_segments() {
    let k = keys();
    // zstd output of random bytes is slightly larger than its input, so
    // these land on both sides of segment boundaries.
    for n in [
        0,
        1,
        100,
        SEGMENT - 20,
        SEGMENT,
        SEGMENT + 1,
        3 * SEGMENT + 7,
    ] {
        let plain = pseudo(n);
        let s = seal_bytes(&k, MAN, &plain);
        assert!(s.starts_with("sparsebak-sealed 2 manifest "));
        assert_eq!(
            open_bytes(&k, MAN, s.as_bytes(), n as u64, "m").unwrap(),
            plain
        );
        assert!(
            open_bytes(&k, MAN, s.as_bytes(), n as u64 - 1.min(n as u64), "m").is_err() || n == 0
        );
    }
}

#[test]
fn plaintext_is_not_visible_and_nonces_differ() {
    let k = keys();
    let plain = b"vm-secret-private vm-secret-private".repeat(10);
    let a = seal_bytes(&k, MAN, &plain);
    let b = seal_bytes(&k, MAN, &plain);
    assert_ne!(a, b);
    assert!(!a.contains("secret"));
}

#[test]
fn wrong_place_key_or_kind_is_refused() {
    let k = keys();
    let s = seal_bytes(&k, MAN, b"hello");
    let other_ctx = Place {
        context: "vabc/S_20260101-000001",
        ..MAN
    };
    let e = open_bytes(&k, other_ctx, s.as_bytes(), 100, "m").unwrap_err();
    assert!(matches!(e, CryptoError::Auth(_)), "{e}");
    let other_key = ArchiveKeys::derive(&MasterKey::from_bytes([8; 32]), "uuid-1");
    assert!(matches!(
        open_bytes(&other_key, MAN, s.as_bytes(), 100, "m"),
        Err(CryptoError::Auth(_))
    ));
    let info = Place {
        kind: MetaKind::Info,
        ..MAN
    };
    let e = open_bytes(&k, info, s.as_bytes(), 100, "m").unwrap_err();
    assert!(e.to_string().contains("not a info file"), "{e}");
}

#[test]
fn every_bit_flip_truncation_and_reorder_is_refused() {
    let k = keys();
    let plain = pseudo(2 * SEGMENT + 5);
    let s = seal_bytes(&k, MAN, &plain).into_bytes();
    for i in (0..s.len()).step_by(997).chain([s.len() - 2]) {
        let mut t = s.clone();
        t[i] ^= 0x01;
        assert!(
            open_bytes(&k, MAN, &t, 1 << 20, "m").is_err(),
            "flip at {i}"
        );
    }
    let nl: Vec<usize> = s
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == b'\n')
        .map(|(i, _)| i)
        .collect();
    assert_eq!(nl.len(), 4, "header and three segments");
    for &cut in &nl[..nl.len() - 1] {
        let e = open_bytes(&k, MAN, &s[..=cut], 1 << 20, "m").unwrap_err();
        assert!(matches!(e, CryptoError::Auth(_)), "cut after line: {e}");
    }
    assert!(open_bytes(&k, MAN, &s[..s.len() - 1], 1 << 20, "m").is_err());
    // Swap segments 1 and 2.
    let lines: Vec<&[u8]> = s.split(|&c| c == b'\n').collect();
    let swapped = [lines[0], lines[2], lines[1], lines[3], lines[4]].join(&b'\n');
    assert_eq!(lines.len(), 5, "four lines and the empty rest");
    assert!(open_bytes(&k, MAN, &swapped, 1 << 20, "m").is_err());
    // Trailing garbage after the last segment.
    let mut more = s.clone();
    more.extend_from_slice(lines[1]);
    more.push(b'\n');
    assert!(open_bytes(&k, MAN, &more, 1 << 20, "m").is_err());
}

#[test]
fn oversized_lines_and_plaintext_are_refused() {
    let k = keys();
    let mut s = seal_bytes(&k, MAN, b"x").into_bytes();
    s.truncate(s.iter().position(|&c| c == b'\n').unwrap() + 1);
    s.extend(std::iter::repeat_n(b'A', MAX_LINE + 10));
    let e = open_bytes(&k, MAN, &s, 100, "m").unwrap_err();
    assert!(e.to_string().contains("length limit"), "{e}");
    let big = vec![0u8; 1 << 20];
    let s = seal_bytes(&k, MAN, &big);
    let e = open_bytes(&k, MAN, s.as_bytes(), 1000, "m").unwrap_err();
    assert!(e.to_string().contains("limit of 1000"), "{e}");
}

#[test]
fn synthetic_nonces_are_deterministic_per_place_and_content() {
    let k = keys();
    let info = Place {
        kind: MetaKind::Info,
        ..MAN
    };
    let a = seal_bytes_synthetic(&k, info, b"{\"a\":1}");
    assert_eq!(a, seal_bytes_synthetic(&k, info, b"{\"a\":1}"));
    assert_ne!(a, seal_bytes_synthetic(&k, info, b"{\"a\":2}"));
    let other = Place {
        context: "vabc/S_20260101-000001",
        ..info
    };
    assert_ne!(a, seal_bytes_synthetic(&k, other, b"{\"a\":1}"));
    assert_eq!(
        open_bytes(&k, info, a.as_bytes(), 100, "i").unwrap(),
        b"{\"a\":1}"
    );
    assert!(open_bytes(&k, other, a.as_bytes(), 100, "i").is_err());
}
