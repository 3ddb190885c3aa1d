//! Which sessions of a volume a prune merges away, by sparsebak 0.2's rules
//! (reference §8.1) plus keep rules for timers.
//!
//! Names compare as strings `S_YYYYMMDD-HHMMSS`, which is time order. A
//! selection is always a contiguous run of the chain that never includes
//! the newest session; the session right after it is the target.

use crate::timefmt::unix_from_parts;
use sparsebak_common::names::SessionName;
use std::ops::RangeInclusive;

/// What to prune, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `--session=DT`: exactly that session, if it exists.
    One(SessionName),
    /// `--session=DT1,DT2`: every session from DT1 to DT2, both inclusive.
    Range(SessionName, SessionName),
    /// `--all-before --session=DT`: every session strictly before DT.
    AllBefore(SessionName),
    /// `--keep-last=N` and/or `--keep-days=D`: keep the newest N sessions
    /// and every session from the last D days (`now` in Unix seconds);
    /// prune everything older. The newest session is always kept.
    Keep {
        last: Option<u64>,
        days: Option<u64>,
        now: i64,
    },
}

/// The outcome for one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Fewer than two sessions: nothing can be pruned.
    TooFew,
    /// The rule selects no session.
    Empty,
    /// The rule selects the newest session, which is never pruned.
    Newest,
    /// Prune these chain indices; the target is `end + 1`.
    Sessions(RangeInclusive<usize>),
}

impl Rule {
    /// Check the rule on its own (before looking at any volume).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Rule::Range(a, b) if b <= a => {
                Err("the second date-time of --session must be later than the first".into())
            }
            Rule::Keep {
                last: None,
                days: None,
                ..
            } => Err("a keep rule needs --keep-last=N or --keep-days=N".into()),
            Rule::Keep { last: Some(0), .. } => {
                Err("--keep-last=0 would prune the newest session; it must be 1 or more".into())
            }
            _ => Ok(()),
        }
    }
}

fn unix_of(s: &SessionName) -> i64 {
    unix_from_parts(s.parts())
}

/// Apply `rule` to a chain (oldest first).
pub fn select(chain: &[SessionName], rule: &Rule) -> Selection {
    let n = chain.len();
    if n < 2 {
        return Selection::TooFew;
    }
    let newest = &chain[n - 1];
    let range = match rule {
        Rule::One(s) if s >= newest => return Selection::Newest,
        Rule::One(s) => chain.iter().position(|c| c == s).map(|i| i..=i),
        Rule::Range(a, b) => {
            if b >= newest {
                return Selection::Newest;
            }
            let start = chain.iter().position(|c| c >= a);
            let end = chain.iter().rposition(|c| c <= b);
            match (start, end) {
                (Some(s), Some(e)) if s <= e => Some(s..=e),
                _ => None,
            }
        }
        Rule::AllBefore(dt) => {
            // As in sparsebak 0.2, a date at or after the newest session is
            // refused rather than read as "everything but the newest".
            if dt >= newest {
                return Selection::Newest;
            }
            let k = chain.iter().take_while(|c| *c < dt).count();
            (k > 0).then(|| 0..=k - 1)
        }
        Rule::Keep { last, days, now } => {
            // Both rules keep a suffix of the chain; keep the longer one.
            let by_last = last.map_or(1, |l| l.min(n as u64) as usize);
            let by_days = days.map_or(1, |d| {
                let cutoff = now.saturating_sub((d as i64).saturating_mul(86_400));
                chain
                    .iter()
                    .rev()
                    .take_while(|c| unix_of(c) >= cutoff)
                    .count()
            });
            let keep = by_last.max(by_days).max(1);
            (keep < n).then(|| 0..=n - 1 - keep)
        }
    };
    match range {
        None => Selection::Empty,
        Some(r) if *r.end() == n - 1 => Selection::Newest,
        Some(r) => Selection::Sessions(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ts: &str) -> SessionName {
        SessionName::from_timestamp(ts).unwrap()
    }

    fn chain() -> Vec<SessionName> {
        [
            "20260101-000000",
            "20260102-000000",
            "20260103-000000",
            "20260110-000000",
            "20260111-120000",
        ]
        .iter()
        .map(|t| s(t))
        .collect()
    }

    fn sel(rule: Rule) -> Selection {
        assert_eq!(rule.check(), Ok(()));
        select(&chain(), &rule)
    }

    #[test]
    fn one_session() {
        assert_eq!(
            sel(Rule::One(s("20260102-000000"))),
            Selection::Sessions(1..=1)
        );
        assert_eq!(sel(Rule::One(s("20260102-000001"))), Selection::Empty);
        assert_eq!(sel(Rule::One(s("20260111-120000"))), Selection::Newest);
        assert_eq!(sel(Rule::One(s("20270101-000000"))), Selection::Newest);
        assert_eq!(
            select(&chain()[..1], &Rule::One(s("20260101-000000"))),
            Selection::TooFew
        );
    }

    #[test]
    fn ranges_snap_inwards_and_never_reach_the_newest() {
        let r = |a, b| sel(Rule::Range(s(a), s(b)));
        assert_eq!(
            r("20260101-000000", "20260103-000000"),
            Selection::Sessions(0..=2)
        );
        assert_eq!(
            r("20251231-000000", "20260105-000000"),
            Selection::Sessions(0..=2)
        );
        assert_eq!(
            r("20260101-000001", "20260110-000000"),
            Selection::Sessions(1..=3)
        );
        assert_eq!(r("20260104-000000", "20260105-000000"), Selection::Empty);
        assert_eq!(r("20260102-000000", "20260111-120000"), Selection::Newest);
        assert_eq!(r("20260102-000000", "20270101-000000"), Selection::Newest);
        let back = Rule::Range(s("20260103-000000"), s("20260102-000000"));
        assert!(back.check().unwrap_err().contains("later than the first"));
    }

    #[test]
    fn all_before() {
        let b = |t| sel(Rule::AllBefore(s(t)));
        assert_eq!(b("20260103-000000"), Selection::Sessions(0..=1));
        assert_eq!(b("20260103-000001"), Selection::Sessions(0..=2));
        assert_eq!(b("20260111-115959"), Selection::Sessions(0..=3));
        assert_eq!(b("20260111-120000"), Selection::Newest);
        assert_eq!(b("20260101-000000"), Selection::Empty);
        assert_eq!(b("20260111-120001"), Selection::Newest);
    }

    #[test]
    fn keep_rules() {
        let now = unix_from_parts([2026, 1, 12, 0, 0, 0]);
        let k = |last, days| sel(Rule::Keep { last, days, now });
        assert_eq!(k(Some(2), None), Selection::Sessions(0..=2));
        assert_eq!(k(Some(1), None), Selection::Sessions(0..=3));
        assert_eq!(k(Some(5), None), Selection::Empty);
        assert_eq!(k(Some(99), None), Selection::Empty);
        // Two days back from Jan 12 keeps Jan 10 and Jan 11.
        assert_eq!(k(None, Some(2)), Selection::Sessions(0..=2));
        assert_eq!(k(None, Some(0)), Selection::Sessions(0..=3));
        assert_eq!(k(None, Some(30)), Selection::Empty);
        // Together, whichever keeps more wins.
        assert_eq!(k(Some(4), Some(2)), Selection::Sessions(0..=0));
        assert_eq!(k(Some(1), Some(2)), Selection::Sessions(0..=2));
        let none = Rule::Keep {
            last: None,
            days: None,
            now,
        };
        assert!(none.check().is_err());
        let zero = Rule::Keep {
            last: Some(0),
            days: None,
            now,
        };
        assert!(zero.check().unwrap_err().contains("--keep-last=0"));
    }
}
