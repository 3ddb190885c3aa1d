//! The store's clock: the two date forms S3 answers in, as seconds since
//! the epoch (UTC). A lease is judged by the store's clock, never by the
//! agent's, so a VM with a wrong clock cannot steal or keep a lease.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn to_unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<u64> {
    let ok = (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61;
    let days = days_from_civil(y, mo, d);
    (ok && days >= 0).then(|| days as u64 * 86400 + u64::from(h * 3600 + mi * 60 + s))
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
}

/// `2026-12-05T08:17:48.000Z` (a listing's LastModified); fraction dropped.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let time = time.split('.').next()?;
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    to_unix(
        i64::from(num(d[0])?),
        num(d[1])?,
        num(d[2])?,
        num(t[0])?,
        num(t[1])?,
        num(t[2])?,
    )
}

/// `Sat, 05 Dec 2026 08:17:48 GMT` (an answer's Date, Last-Modified).
pub fn parse_http_date(s: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p: Vec<&str> = s.split_whitespace().collect();
    if p.len() != 6 || p[5] != "GMT" {
        return None;
    }
    let mo = MONTHS.iter().position(|m| *m == p[2])? as u32 + 1;
    let t: Vec<&str> = p[4].split(':').collect();
    if t.len() != 3 {
        return None;
    }
    to_unix(
        i64::from(num(p[3])?),
        mo,
        num(p[1])?,
        num(t[0])?,
        num(t[1])?,
        num(t[2])?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::sigv4::amz_date;

    #[test]
    fn both_forms_agree_with_the_signing_clock() {
        let t = 1_796_458_668; // 2026-12-05T08:17:48Z
        assert_eq!(amz_date(t), "20261205T081748Z");
        assert_eq!(parse_iso8601("2026-12-05T08:17:48.123Z"), Some(t));
        assert_eq!(parse_http_date("Sat, 05 Dec 2026 08:17:48 GMT"), Some(t));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2000-02-29T23:59:59Z"), Some(951_868_799));
        for bad in [
            "2026-13-05T08:17:48Z",
            "2026-12-05 08:17:48Z",
            "x",
            "2026-12-05T08:17:48",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
        assert_eq!(parse_http_date("Sat, 05 Foo 2026 08:17:48 GMT"), None);
        assert_eq!(parse_http_date("Sat, 05 Dec 2026 08:17:48 PST"), None);
    }
}
