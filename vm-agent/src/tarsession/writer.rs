//! Writing a tar session's own part while its stream is received: every
//! chunk member is appended to `chunks.tar` (ustar headers, as GNU tar
//! writes them) and indexed in `chunks.idx` as it is written, so reading
//! never scans the tar file.

use super::part::{idx_header, IdxEntry, BLOCK};
use super::{IDX_FILE, TAR_FILE};
use crate::error::{AgentError, IoContext, Result};
use sparsebak_common::names::chunk_rel_path;
use sparsebak_common::tarmember::member_header;
use sparsebak_common::units::ByteOffset;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct TarWriter {
    tar: BufWriter<File>,
    idx: BufWriter<File>,
    tar_path: PathBuf,
    idx_path: PathBuf,
    /// Bytes written to the tar file so far.
    pos: u64,
    count: u64,
}

fn create(p: &Path) -> Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
        .ctx(format_args!("cannot create {}", p.display()))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

impl TarWriter {
    /// Create `chunks.tar` and `chunks.idx` in the temporary session dir.
    pub fn create(dir: &Path) -> Result<TarWriter> {
        let (tar_path, idx_path) = (dir.join(TAR_FILE), dir.join(IDX_FILE));
        let tar = create(&tar_path)?;
        let mut idx = create(&idx_path)?;
        idx.write_all(&idx_header(0))
            .ctx(format_args!("cannot write {}", idx_path.display()))?;
        Ok(TarWriter {
            tar,
            idx,
            tar_path,
            idx_path,
            pos: 0,
            count: 0,
        })
    }

    /// Append the member for `addr`, copying exactly `len` bytes from `data`;
    /// returns the bytes copied (fewer if the stream ended early).
    pub fn append<R: Read>(&mut self, addr: ByteOffset, data: &mut R, len: u64) -> Result<u64> {
        let werr = |e: io::Error, p: &Path| {
            AgentError::io(format_args!("cannot write {}", p.display()), e)
        };
        let h = member_header(&chunk_rel_path(addr), len, tar::EntryType::Regular)
            .expect("layout names fit ustar");
        self.tar
            .write_all(h.as_bytes())
            .map_err(|e| werr(e, &self.tar_path))?;
        let offset = self.pos + BLOCK;
        let n =
            io::copy(&mut data.take(len), &mut self.tar).map_err(|e| werr(e, &self.tar_path))?;
        if n != len {
            return Ok(n);
        }
        let pad = (BLOCK - len % BLOCK) % BLOCK;
        self.tar
            .write_all(&[0u8; BLOCK as usize][..pad as usize])
            .map_err(|e| werr(e, &self.tar_path))?;
        self.pos = offset + len + pad;
        self.idx
            .write_all(&IdxEntry { addr, offset, len }.encode())
            .map_err(|e| werr(e, &self.idx_path))?;
        self.count += 1;
        Ok(n)
    }

    /// End the tar file (two zero blocks) and write the index's count.
    /// Durability comes with the session's commit (`syncfs`).
    pub fn finish(mut self) -> Result<()> {
        let werr = |e: io::Error, p: &Path| {
            AgentError::io(format_args!("cannot write {}", p.display()), e)
        };
        self.tar
            .write_all(&[0u8; 2 * BLOCK as usize])
            .and_then(|_| self.tar.flush())
            .map_err(|e| werr(e, &self.tar_path))?;
        let mut idx = self
            .idx
            .into_inner()
            .map_err(|e| werr(e.into_error(), &self.idx_path))?;
        idx.seek(SeekFrom::Start(0))
            .and_then(|_| idx.write_all(&idx_header(self.count)))
            .map_err(|e| werr(e, &self.idx_path))
    }
}
