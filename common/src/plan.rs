//! The prune plan: what dom0 computed and the agent carries out, as a text
//! file both sides keep until the prune is complete (docs/FORMAT.md, "Prune").
//!
//! ```text
//! sparsebak-prune-plan 1
//! vol <volume>
//! target S_…                 the session the pruned ones merge into
//! prune S_…                  one line per pruned session, ascending
//! move S_… x<16 hex>         rename S_…/<9hex>/x<addr> to target/<9hex>/x<addr>
//! end <number of moves>
//! ```
//!
//! Moves are strictly ascending by address, so no two name the same chunk,
//! and each names one of the pruned sessions. [`PlanReader`] checks all of
//! that while streaming, with memory bounded by the number of pruned
//! sessions, so a plan of millions of moves never has to fit in memory.

use crate::names::{chunk_file_name, parse_chunk_file_name, SessionName, VolName};
use crate::units::ByteOffset;
use std::io::{BufRead, Read};

/// First line of every plan.
pub const PLAN_MAGIC: &str = "sparsebak-prune-plan 1";
/// Name of the plan text file inside a plan directory (beside the target's
/// new `manifest` and `info.json`).
pub const PLAN_FILE: &str = "plan";
/// Longest plan line accepted.
const MAX_LINE: u64 = 256;

/// Who is merged into whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanHead {
    pub vol: VolName,
    pub target: SessionName,
    /// Oldest first; never empty.
    pub pruned: Vec<SessionName>,
}

/// One chunk file to move from `pruned[session]` into the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub session: usize,
    pub addr: ByteOffset,
}

impl PlanHead {
    /// Check the rules a head must follow on its own.
    pub fn check(&self) -> Result<(), String> {
        if self.pruned.is_empty() {
            return Err("a prune plan must prune at least one session".into());
        }
        if self.pruned.windows(2).any(|w| w[0] >= w[1]) {
            return Err("pruned sessions must be distinct and in ascending order".into());
        }
        if self.pruned.iter().any(|s| s >= &self.target) {
            return Err(format!(
                "every pruned session must be older than the target {}",
                self.target
            ));
        }
        Ok(())
    }

    /// The head as plan text (each line `\n`-ended).
    pub fn to_text(&self) -> String {
        let mut t = format!("{PLAN_MAGIC}\nvol {}\ntarget {}\n", self.vol, self.target);
        for s in &self.pruned {
            t.push_str(&format!("prune {s}\n"));
        }
        t
    }

    /// The line for one move.
    pub fn move_line(&self, m: &Move) -> String {
        format!(
            "move {} {}\n",
            self.pruned[m.session],
            chunk_file_name(m.addr)
        )
    }
}

/// The closing line.
pub fn end_line(moves: u64) -> String {
    format!("end {moves}\n")
}

/// Streams a plan: the head first ([`PlanReader::open`]), then the moves;
/// the iterator ends with an error unless the `end` line is present, counts
/// the moves exactly, and nothing follows it.
pub struct PlanReader<R: BufRead> {
    r: R,
    pub head: PlanHead,
    /// A line read ahead while parsing the head.
    pending: Option<String>,
    last: Option<ByteOffset>,
    moves: u64,
    lineno: u64,
    done: bool,
}

fn read_line<R: BufRead>(r: &mut R, lineno: &mut u64) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("cannot read the prune plan: {e}"))?;
    *lineno += 1;
    if n == 0 {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return Err(format!(
            "prune plan line {lineno} is too long or not newline-terminated"
        ));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| format!("prune plan line {lineno} is not UTF-8"))
}

impl<R: BufRead> PlanReader<R> {
    /// Parse and check the head.
    pub fn open(mut r: R) -> Result<Self, String> {
        let mut lineno = 0;
        let mut next = |r: &mut R, what: &str| -> Result<String, String> {
            read_line(r, &mut lineno)?.ok_or_else(|| format!("prune plan ends before its {what}"))
        };
        if next(&mut r, "first line")? != PLAN_MAGIC {
            return Err(format!(
                "not a prune plan (first line is not {PLAN_MAGIC:?})"
            ));
        }
        let field = |line: String, key: &str| -> Result<String, String> {
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| format!("prune plan: expected a {key:?} line, found {line:?}"))
        };
        let vol = VolName::new(&field(next(&mut r, "vol line")?, "vol")?)
            .map_err(|e| format!("prune plan: {e}"))?;
        let target = SessionName::new(&field(next(&mut r, "target line")?, "target")?)
            .map_err(|e| format!("prune plan: {e}"))?;
        let mut pruned = Vec::new();
        let pending = loop {
            let line = next(&mut r, "end line")?;
            match line.strip_prefix("prune ") {
                Some(s) => {
                    pruned.push(SessionName::new(s).map_err(|e| format!("prune plan: {e}"))?)
                }
                None => break line,
            }
        };
        let head = PlanHead {
            vol,
            target,
            pruned,
        };
        head.check().map_err(|e| format!("prune plan: {e}"))?;
        Ok(PlanReader {
            r,
            head,
            pending: Some(pending),
            last: None,
            moves: 0,
            lineno,
            done: false,
        })
    }

    fn parse(&mut self, line: &str) -> Result<Option<Move>, String> {
        let at = self.lineno;
        if let Some(n) = line.strip_prefix("end ") {
            // Exactly the digits end_line writes: u64::from_str would also
            // take "+2", and leading zeros.
            let canonical = !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (!n.starts_with('0') || n == "0");
            if !canonical || n.parse::<u64>().ok() != Some(self.moves) {
                return Err(format!(
                    "prune plan line {at}: {line:?} does not match the {} moves listed",
                    self.moves
                ));
            }
            if read_line(&mut self.r, &mut self.lineno)?.is_some() {
                return Err("prune plan: text follows its end line".into());
            }
            return Ok(None);
        }
        let bad = || format!("prune plan line {at}: malformed {line:?}");
        let rest = line.strip_prefix("move ").ok_or_else(bad)?;
        let (s, a) = rest.split_once(' ').ok_or_else(bad)?;
        // `pruned` is strictly ascending (PlanHead::check): a binary search
        // keeps a plan of many moves over many sessions linear.
        let session = self
            .head
            .pruned
            .binary_search_by(|p| p.as_str().cmp(s))
            .map_err(|_| format!("prune plan line {at}: {s:?} is not a pruned session"))?;
        let addr = parse_chunk_file_name(a).ok_or_else(bad)?;
        if self.last.is_some_and(|l| addr <= l) {
            return Err(format!(
                "prune plan line {at}: address {addr} is repeated or out of order"
            ));
        }
        self.last = Some(addr);
        self.moves += 1;
        Ok(Some(Move { session, addr }))
    }
}

impl<R: BufRead> Iterator for PlanReader<R> {
    type Item = Result<Move, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let line = match self.pending.take() {
            Some(l) => Ok(Some(l)),
            None => read_line(&mut self.r, &mut self.lineno),
        };
        let res = match line {
            Ok(Some(l)) => self.parse(&l),
            Ok(None) => Err("prune plan ends without its end line".into()),
            Err(e) => Err(e),
        };
        match res {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> PlanHead {
        PlanHead {
            vol: VolName::new("v").unwrap(),
            target: SessionName::new("S_20260103-000000").unwrap(),
            pruned: vec![
                SessionName::new("S_20260101-000000").unwrap(),
                SessionName::new("S_20260102-000000").unwrap(),
            ],
        }
    }

    fn text(moves: &[(usize, u64)], end: Option<u64>) -> String {
        let h = head();
        let mut t = h.to_text();
        for &(session, a) in moves {
            t.push_str(&h.move_line(&Move {
                session,
                addr: ByteOffset(a),
            }));
        }
        if let Some(n) = end {
            t.push_str(&end_line(n));
        }
        t
    }

    fn read(t: &str) -> Result<(PlanHead, Vec<Move>), String> {
        let r = PlanReader::open(t.as_bytes())?;
        let h = r.head.clone();
        let m = r.collect::<Result<Vec<_>, _>>()?;
        Ok((h, m))
    }

    #[test]
    fn round_trip() {
        let t = text(&[(1, 0), (0, 0x10000), (1, 0x20000)], Some(3));
        assert!(t.contains("move S_20260101-000000 x0000000000010000\n"));
        let (h, m) = read(&t).unwrap();
        assert_eq!(h, head());
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].session, 0);
        let (_, none) = read(&text(&[], Some(0))).unwrap();
        assert!(none.is_empty());
    }

    /// Regression (found by the prune_plan fuzz target): `end +2` was
    /// accepted for two moves, because u64::from_str takes a leading `+`;
    /// a plan must be exactly what `end_line` writes.
    #[test]
    fn end_count_with_a_plus_sign_is_refused() {
        for end in ["+2", "02", " 2", "2 ", "", "-0"] {
            let t = text(&[(1, 0), (0, 0x10000)], None) + &format!("end {end}\n");
            let e = read(&t).expect_err(end);
            assert!(e.contains("does not match"), "{end:?}: {e}");
        }
        assert!(read(&text(&[(1, 0), (0, 0x10000)], Some(2))).is_ok());
        assert!(read(&text(&[], Some(0))).is_ok());
    }

    #[test]
    fn refusals() {
        let cases = [
            (text(&[(0, 0)], None), "without its end"),
            (text(&[(0, 0)], Some(2)), "does not match"),
            (text(&[(0, 0x10000), (1, 0)], Some(2)), "out of order"),
            (text(&[(0, 0), (1, 0)], Some(2)), "repeated"),
            (text(&[], Some(0)) + "move x\n", "follows its end"),
            (
                text(&[], None) + "move S_20260104-000000 x0000000000000000\nend 1\n",
                "not a pruned session",
            ),
            (
                text(&[], None) + "move S_20260101-000000 ../../etc\nend 1\n",
                "malformed",
            ),
            (
                text(&[], None) + "move S_20260101-000000 x000000000000000A\nend 1\n",
                "malformed",
            ),
            (
                text(&[], Some(0)).replace("vol v", "vol .."),
                "invalid volume",
            ),
            (
                text(&[], Some(0)).replace("target S_20260103", "target S_20250103"),
                "older than the target",
            ),
            (
                text(&[], Some(0))
                    .replace("prune S_20260102-000000\n", "prune S_20260101-000000\n"),
                "ascending",
            ),
            (
                text(&[], Some(0)).replace("prune S_20260101-000000\n", "prune S_../x\n"),
                "invalid session",
            ),
            ("not a plan\n".to_string(), "not a prune plan"),
            (text(&[], Some(0)).trim_end().to_string(), "newline"),
            (
                format!("{PLAN_MAGIC}\nvol v\ntarget S_20260103-000000\nend 0\n"),
                "at least one",
            ),
        ];
        for (t, want) in cases {
            let e = read(&t).expect_err(&t);
            assert!(e.contains(want), "{t:?}: {e}");
        }
    }
}
