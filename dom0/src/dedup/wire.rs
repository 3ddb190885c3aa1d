//! The tar member asking the agent for a hard link: a PAX header with
//! `linkpath` (the target, `volumes/<vol>/S_…/<9hex>/x<16hex>` relative to
//! the archive dir) and `SPARSEBAK.sha256` (the stored hash the target must
//! have), then a ustar `Link` member named like the chunk file, size 0.

use sparsebak_common::linkref::{hex32, ChunkLoc, PAX_LINKPATH, PAX_SHA256};
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
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Link);
    h.set_cksum();
    tar.append(&h, io::empty())
}
