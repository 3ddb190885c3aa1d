//! Which blocks of a thin volume the pool has provisioned, from `thin_dump`
//! of the pool's metadata snapshot, parsed as a stream (quick-xml) into a
//! bitmap of the volume's pool blocks. A first send reads only those: an
//! unprovisioned block of a thin volume reads as zeros.
//!
//! ```xml
//! <superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="16384">
//!   <device dev_id="3" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
//!     <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
//!     <single_mapping origin_block="10" data_block="20" time="0"/>
//!   </device>
//! </superblock>
//! ```
//!
//! As with thin_delta (delta.rs), anything unexpected — another root, a
//! missing attribute, an unknown element, another device, a truncated
//! document, a block beyond the volume, a block mapped twice, a count that
//! disagrees with `mapped_blocks` — is an error, never a silently smaller map.
//! Memory is one bit per pool block of the volume (2 MiB for 1 TiB at 64 KiB).

use super::delta::{attr, attr_opt, BlockSectors};
use anyhow::{anyhow, bail, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use sparsebak_common::units::Bytes;
use std::io::BufRead;

/// Why there is no map.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The map cannot be had (tool missing or failed, volume too big, an
    /// external origin): read the whole volume.
    #[error("{0:#}")]
    Unavailable(anyhow::Error),
    /// The dump is malformed or contradicts the volume: refuse to send.
    #[error("{0:#}")]
    Refused(anyhow::Error),
}

/// Largest map built: 2^31 blocks (256 MiB of bitmap, 128 TiB at 64 KiB
/// blocks). A bigger volume is read in full.
pub const MAX_MAP_BLOCKS: u64 = 1 << 31;

/// The provisioned pool blocks of one thin volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedBlocks {
    block: BlockSectors,
    /// Blocks covering the volume (the last one may be partial).
    blocks: u64,
    bits: Vec<u64>,
    mapped: u64,
}

impl MappedBlocks {
    /// An empty map of a volume of `size` in blocks of `block`; `None` if
    /// it would exceed [`MAX_MAP_BLOCKS`].
    pub fn new(block: BlockSectors, size: Bytes) -> Option<Self> {
        let blocks = size.0.div_ceil(block.bytes().max(1));
        if block.0 == 0 || blocks > MAX_MAP_BLOCKS {
            return None;
        }
        Some(MappedBlocks {
            block,
            blocks,
            bits: vec![0; blocks.div_ceil(64) as usize],
            mapped: 0,
        })
    }

    pub fn block_bytes(&self) -> u64 {
        self.block.bytes()
    }

    /// Blocks covering the volume.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Blocks provisioned.
    pub fn mapped(&self) -> u64 {
        self.mapped
    }

    pub fn is_mapped(&self, b: u64) -> bool {
        b < self.blocks && self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    /// Mark `len` blocks from `begin`; an error if any lies beyond the
    /// volume or is already marked.
    pub fn mark(&mut self, begin: u64, len: u64) -> Result<()> {
        let end = begin
            .checked_add(len)
            .filter(|&e| len > 0 && e <= self.blocks)
            .ok_or_else(|| {
                anyhow!(
                    "blocks {begin}+{len} lie outside the volume's {} blocks",
                    self.blocks
                )
            })?;
        for b in begin..end {
            let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            if self.bits[w] & bit != 0 {
                bail!("block {b} is mapped twice");
            }
            self.bits[w] |= bit;
        }
        self.mapped += len;
        Ok(())
    }

    /// Whether block `b` (inside the volume) is mapped, and the first block
    /// after `b` whose state differs (or the end of the volume).
    pub fn run_at(&self, b: u64) -> (bool, u64) {
        let state = self.is_mapped(b);
        let full = if state { u64::MAX } else { 0 };
        let mut i = b + 1;
        while i < self.blocks {
            if i.is_multiple_of(64) && self.bits[(i / 64) as usize] == full {
                i += 64;
                continue;
            }
            if self.is_mapped(i) != state {
                return (state, i);
            }
            i += 1;
        }
        (state, self.blocks)
    }
}

#[derive(PartialEq)]
enum State {
    Start,
    InSuperblock,
    InDevice,
    DeviceDone,
    Done,
}

/// The parse in progress.
struct Dump {
    dev_id: u64,
    size: Bytes,
    state: State,
    map: Option<MappedBlocks>,
    /// The device's `mapped_blocks`, checked at its end.
    want: Option<u64>,
    /// Why no map can be had (too big; a dump format this parser does not
    /// follow): stop, read everything.
    unsupported: Option<String>,
}

impl Dump {
    fn superblock(&mut self, e: &BytesStart) -> Result<()> {
        let dbs = BlockSectors(attr(e, "data_block_size")?);
        if dbs.0 == 0 || dbs.0 > (1 << 30) {
            bail!("thin_dump reports an impossible data_block_size {}", dbs.0);
        }
        self.map = MappedBlocks::new(dbs, self.size);
        if self.map.is_none() {
            self.unsupported = Some(format!(
                "the volume is too big to map its {} KiB blocks",
                dbs.bytes() >> 10
            ));
        }
        self.state = State::InSuperblock;
        Ok(())
    }

    fn device(&mut self, e: &BytesStart, empty: bool) -> Result<()> {
        let id = attr(e, "dev_id")?;
        if id != self.dev_id {
            bail!("thin_dump lists thin id {id}, not {}", self.dev_id);
        }
        self.want = attr_opt(e, "mapped_blocks")?;
        self.state = State::InDevice;
        if empty {
            self.device_end()?;
        }
        Ok(())
    }

    fn mapping(&mut self, e: &BytesStart) -> Result<()> {
        let (begin, len) = match e.name().as_ref() {
            b"range_mapping" => (attr(e, "origin_begin")?, attr(e, "length")?),
            b"single_mapping" => (attr(e, "origin_block")?, 1),
            other => bail!(
                "unexpected element <{}> in thin_dump output",
                String::from_utf8_lossy(other)
            ),
        };
        let data = match e.name().as_ref() {
            b"range_mapping" => attr(e, "data_begin")?,
            _ => attr(e, "data_block")?,
        };
        if data.checked_add(len).is_none() {
            bail!("thin_dump mapping to data block {data}+{len} overflows");
        }
        let map = self.map.as_mut().expect("made at <superblock>");
        map.mark(begin, len)
            .map_err(|e| anyhow!("thin_dump of thin id {}: {e}", self.dev_id))
    }

    fn device_end(&mut self) -> Result<()> {
        let got = self.map.as_ref().expect("made at <superblock>").mapped();
        if let Some(want) = self.want.filter(|&w| w != got) {
            bail!(
                "thin_dump says thin id {} has {want} mapped blocks but lists {got}",
                self.dev_id
            );
        }
        self.state = State::DeviceDone;
        Ok(())
    }

    fn event(&mut self, ev: Event) -> Result<()> {
        match (&self.state, ev) {
            (_, Event::Decl(_) | Event::Comment(_)) => {}
            (_, Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => {}
            (State::Start, Event::Start(e)) if e.name().as_ref() == b"superblock" => {
                self.superblock(&e)?
            }
            (State::InSuperblock, Event::Start(e)) if e.name().as_ref() == b"device" => {
                self.device(&e, false)?
            }
            (State::InSuperblock, Event::Empty(e)) if e.name().as_ref() == b"device" => {
                self.device(&e, true)?
            }
            // Shared subtrees (thin-provisioning-tools 1.x may write them):
            // not followed, so no map rather than a wrong one.
            (State::InSuperblock | State::InDevice, Event::Start(e) | Event::Empty(e))
                if matches!(e.name().as_ref(), b"def" | b"ref") =>
            {
                self.unsupported = Some(format!(
                    "thin_dump wrote a shared subtree (<{}>), which sparsebak does not follow",
                    String::from_utf8_lossy(e.name().as_ref())
                ));
            }
            (State::InDevice, Event::Empty(e)) => self.mapping(&e)?,
            (State::InDevice, Event::End(e)) if e.name().as_ref() == b"device" => {
                self.device_end()?
            }
            (State::InSuperblock, Event::End(e)) if e.name().as_ref() == b"superblock" => {
                bail!("thin_dump does not list thin id {}", self.dev_id)
            }
            (State::DeviceDone, Event::End(e)) if e.name().as_ref() == b"superblock" => {
                self.state = State::Done
            }
            (State::Done, Event::Eof) => {}
            (_, Event::Eof) => {
                bail!("thin_dump output ended early (no complete <superblock><device> document)")
            }
            (_, other) => bail!("unexpected {:?} in thin_dump output", other),
        }
        Ok(())
    }
}

/// What a dump gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Map(MappedBlocks),
    /// No map can be had, and why: the volume is too big to map
    /// ([`MAX_MAP_BLOCKS`]), or the dump shares subtrees (`<def>`/`<ref>`).
    /// The rest of the input is not read.
    Unsupported(String),
}

/// Parse `thin_dump --dev-id DEV_ID` output for a volume of `size`.
pub fn parse<R: BufRead>(input: R, dev_id: u64, size: Bytes) -> Result<Parsed> {
    let mut rd = Reader::from_reader(input);
    let mut buf = Vec::new();
    let mut d = Dump {
        dev_id,
        size,
        state: State::Start,
        map: None,
        want: None,
        unsupported: None,
    };
    loop {
        let ev = rd.read_event_into(&mut buf).map_err(|e| {
            anyhow!(
                "malformed thin_dump XML at byte {}: {e}",
                rd.buffer_position()
            )
        })?;
        let eof = matches!(ev, Event::Eof);
        d.event(ev)?;
        if let Some(why) = d.unsupported {
            return Ok(Parsed::Unsupported(why));
        }
        if eof {
            let map = d.map.expect("a complete document has a <superblock>");
            return Ok(Parsed::Map(map));
        }
        buf.clear();
    }
}

#[cfg(test)]
#[path = "thinmap_tests.rs"]
mod tests;
