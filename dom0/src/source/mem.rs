//! In-memory and fault-injecting sources for unit tests.

use super::VolumeSource;
use sparsebak_common::units::{ByteOffset, Bytes};
use std::io;

pub struct MemSource {
    pub data: Vec<u8>,
    /// Reads touching this offset fail (fault injection).
    pub fail_at: Option<u64>,
}

impl VolumeSource for MemSource {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn size(&self) -> Bytes {
        Bytes(self.data.len() as u64)
    }
    fn read_at(&self, buf: &mut [u8], off: ByteOffset) -> io::Result<()> {
        let (s, e) = (off.0 as usize, off.0 as usize + buf.len());
        if self.fail_at.is_some_and(|f| (s..e).contains(&(f as usize))) {
            return Err(io::Error::other("injected read error"));
        }
        buf.copy_from_slice(&self.data[s..e]);
        Ok(())
    }
}
