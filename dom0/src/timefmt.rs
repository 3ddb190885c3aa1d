//! UTC timestamps without a calendar crate: session names are UTC so that
//! daylight-saving changes never reorder them (a sparsebak 0.2 bug).

use sparsebak_common::names::SessionName;
use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn parts_from_unix(secs: i64) -> [u32; 6] {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    [
        y as u32,
        m,
        d,
        (s / 3600) as u32,
        (s / 60 % 60) as u32,
        (s % 60) as u32,
    ]
}

pub fn unix_from_parts(p: [u32; 6]) -> i64 {
    days_from_civil(p[0] as i64, p[1], p[2]) * 86_400 + (p[3] * 3600 + p[4] * 60 + p[5]) as i64
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// ISO 8601 UTC, e.g. `2026-11-22T03:51:08Z`.
pub fn iso8601(secs: i64) -> String {
    let p = parts_from_unix(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        p[0], p[1], p[2], p[3], p[4], p[5]
    )
}

/// A session name for now, strictly after `after` (two sends in one second,
/// or a clock that went backwards, still get distinct, ordered names).
pub fn next_session_name(now: i64, after: Option<&SessionName>) -> SessionName {
    let floor = after
        .map(|s| unix_from_parts(s.parts()) + 1)
        .unwrap_or(i64::MIN);
    SessionName::from_parts(parts_from_unix(now.max(floor))).expect("valid calendar time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip() {
        for secs in [
            0i64,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            1_782_000_000,
        ] {
            assert_eq!(unix_from_parts(parts_from_unix(secs)), secs);
        }
        assert_eq!(parts_from_unix(951_782_400), [2000, 2, 29, 0, 0, 0]);
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn session_names_are_strictly_increasing() {
        let t = 1_782_000_000;
        let a = next_session_name(t, None);
        let b = next_session_name(t, Some(&a));
        let c = next_session_name(t - 100, Some(&b));
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
