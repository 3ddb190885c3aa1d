//! Parsing `thin_delta -m` output as a stream (quick-xml), into typed runs.
//!
//! ```xml
//! <superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">
//!   <diff left="2" right="3">
//!     <same begin="0" length="16"/>
//!     <different begin="16" length="1"/>
//!     <right_only begin="3200" length="2"/>
//!     <left_only begin="4800" length="16"/>
//!   </diff>
//! </superblock>
//! ```
//!
//! Anything unexpected — another root, a missing attribute, an unknown
//! element, a diff of other thin ids, a truncated document — is an error,
//! never a silently empty change map.

use anyhow::{anyhow, bail, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::BufRead;

/// A thin-pool data block number (the pool's chunk, not a backup chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolBlock(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaKind {
    Same,
    Different,
    LeftOnly,
    RightOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRun {
    pub kind: DeltaKind,
    pub begin: PoolBlock,
    pub length: u64,
}

/// Pool block size in 512-byte sectors (`data_block_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSectors(pub u64);

impl BlockSectors {
    pub fn bytes(self) -> u64 {
        self.0 * 512
    }
}

/// The numeric attribute `name` of `e`, if present (thin_delta and
/// thin_dump spell every number the same way).
pub(super) fn attr_opt(e: &BytesStart, name: &str) -> Result<Option<u64>> {
    for a in e.attributes() {
        let a = a.map_err(|err| {
            anyhow!(
                "malformed attribute in <{}>: {err}",
                String::from_utf8_lossy(e.name().as_ref())
            )
        })?;
        if a.key.as_ref() == name.as_bytes() {
            let v = std::str::from_utf8(&a.value)
                .map_err(|_| anyhow!("attribute {name} is not UTF-8"))?;
            return v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| anyhow!("attribute {name}={v:?} is not a number"));
        }
    }
    Ok(None)
}

/// The numeric attribute `name` of `e`, which must be present.
pub(super) fn attr(e: &BytesStart, name: &str) -> Result<u64> {
    attr_opt(e, name)?.ok_or_else(|| {
        anyhow!(
            "<{}> lacks the {name} attribute",
            String::from_utf8_lossy(e.name().as_ref())
        )
    })
}

#[derive(PartialEq)]
enum State {
    Start,
    InSuperblock,
    InDiff,
    DiffDone,
    Done,
}

/// Parse thin_delta output for the pair (`left`, `right`) of thin ids,
/// calling `on_run` for every run. Returns the pool block size.
pub fn parse<R: BufRead>(
    input: R,
    left: u64,
    right: u64,
    mut on_run: impl FnMut(BlockSectors, DeltaRun) -> Result<()>,
) -> Result<BlockSectors> {
    let mut rd = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut state = State::Start;
    let mut dbs = BlockSectors(0);
    loop {
        let ev = rd.read_event_into(&mut buf).map_err(|e| {
            anyhow!(
                "malformed thin_delta XML at byte {}: {e}",
                rd.buffer_position()
            )
        })?;
        match (&state, ev) {
            (_, Event::Decl(_) | Event::Comment(_)) => {}
            (_, Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => {}
            (State::Start, Event::Start(e)) if e.name().as_ref() == b"superblock" => {
                dbs = BlockSectors(attr(&e, "data_block_size")?);
                if dbs.0 == 0 || dbs.0 > (1 << 30) {
                    bail!("thin_delta reports an impossible data_block_size {}", dbs.0);
                }
                state = State::InSuperblock;
            }
            (State::InSuperblock, Event::Start(e)) if e.name().as_ref() == b"diff" => {
                let (l, r) = (attr(&e, "left")?, attr(&e, "right")?);
                if (l, r) != (left, right) {
                    bail!("thin_delta compared thin ids {l} and {r}, not {left} and {right}");
                }
                state = State::InDiff;
            }
            (State::InDiff, Event::Empty(e)) => {
                let kind = match e.name().as_ref() {
                    b"same" => DeltaKind::Same,
                    b"different" => DeltaKind::Different,
                    b"left_only" => DeltaKind::LeftOnly,
                    b"right_only" => DeltaKind::RightOnly,
                    other => bail!(
                        "unexpected element <{}> in thin_delta output",
                        String::from_utf8_lossy(other)
                    ),
                };
                let begin = attr(&e, "begin")?;
                let length = attr(&e, "length")?;
                if begin
                    .checked_add(length)
                    .and_then(|end| end.checked_mul(dbs.bytes()))
                    .is_none()
                {
                    bail!("thin_delta range begin={begin} length={length} overflows");
                }
                on_run(
                    dbs,
                    DeltaRun {
                        kind,
                        begin: PoolBlock(begin),
                        length,
                    },
                )?;
            }
            (State::InDiff, Event::End(e)) if e.name().as_ref() == b"diff" => {
                state = State::DiffDone
            }
            (State::DiffDone, Event::End(e)) if e.name().as_ref() == b"superblock" => {
                state = State::Done
            }
            (State::Done, Event::Eof) => return Ok(dbs),
            (_, Event::Eof) => {
                bail!("thin_delta output ended early (no complete <superblock><diff> document)")
            }
            (_, other) => bail!("unexpected {:?} in thin_delta output", other),
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">
  <diff left="2" right="3">
    <same begin="0" length="16"/>
    <different begin="16" length="1"/>
    <same begin="17" length="47"/>
    <right_only begin="3200" length="2"/>
    <left_only begin="4800" length="16"/>
  </diff>
</superblock>
"#;

    fn runs(xml: &str, l: u64, r: u64) -> Result<(BlockSectors, Vec<DeltaRun>)> {
        let mut v = Vec::new();
        let dbs = parse(xml.as_bytes(), l, r, |_, run| {
            v.push(run);
            Ok(())
        })?;
        Ok((dbs, v))
    }

    #[test]
    fn parses_the_recipe_sample() {
        let (dbs, v) = runs(SAMPLE, 2, 3).unwrap();
        assert_eq!(dbs, BlockSectors(128));
        assert_eq!(v.len(), 5);
        assert_eq!(
            v[1],
            DeltaRun {
                kind: DeltaKind::Different,
                begin: PoolBlock(16),
                length: 1
            }
        );
        assert_eq!(v[4].kind, DeltaKind::LeftOnly);
    }

    #[test]
    fn empty_diff_is_fine() {
        let xml =
            r#"<superblock data_block_size="1024"><diff left="1" right="2"></diff></superblock>"#;
        assert_eq!(runs(xml, 1, 2).unwrap().1.len(), 0);
    }

    #[test]
    fn malformed_output_is_an_error() {
        for (bad, want) in [
            ("", "ended early"),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="3">"#,
                "ended early",
            ),
            (
                r#"<superblock><diff left="2" right="3"></diff></superblock>"#,
                "data_block_size",
            ),
            (
                r#"<superblock data_block_size="0"><diff left="2" right="3"></diff></superblock>"#,
                "impossible",
            ),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="4"></diff></superblock>"#,
                "not 2 and 3",
            ),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="3"><changed begin="1" length="1"/></diff></superblock>"#,
                "unexpected element",
            ),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="3"><different begin="x" length="1"/></diff></superblock>"#,
                "not a number",
            ),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="3"><different length="1"/></diff></superblock>"#,
                "lacks the begin",
            ),
            (
                r#"<superblock data_block_size="128"><diff left="2" right="3"><different begin="18446744073709551615" length="1"/></diff></superblock>"#,
                "overflows",
            ),
            (
                r#"<metadata data_block_size="128"></metadata>"#,
                "unexpected",
            ),
            ("not xml at all", "unexpected"),
        ] {
            let e = format!("{:#}", runs(bad, 2, 3).unwrap_err());
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
