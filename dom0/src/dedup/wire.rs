//! The tar member asking the agent for a hard link: a PAX header with
//! `linkpath` (the target, `volumes/<vol>/S_…/<9hex>/x<16hex>` relative to
//! the archive dir) and `SPARSEBAK.sha256` (the stored hash the target must
//! have), then a ustar `Link` member named like the chunk file, size 0.

use sparsebak_common::linkref::{hex32, ChunkLoc, PAX_LINKPATH, PAX_SHA256};
use sparsebak_common::tarmember::member_header;
use std::io::{self, Write};

pub fn append_link<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    target: &ChunkLoc,
    stored: &[u8; 32],
) -> io::Result<()> {
    let path = target.to_path();
    let hash = hex32(stored);
    tar.append_pax_extensions([
        (PAX_LINKPATH, path.as_bytes()),
        (PAX_SHA256, hash.as_bytes()),
    ])?;
    let h = member_header(name, 0, tar::EntryType::Link)?;
    tar.append(&h, io::empty())
}
