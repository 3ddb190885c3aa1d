//! sparsebak: fast incremental backups of disk volumes into a "time machine"
//! archive. Every session restores the whole volume; only changed chunks are
//! stored after the first.
//!
//! Layers, bottom up: [`chunk`] (chunk file encoding), [`manifest`] (what a
//! session holds), [`local_meta`] and [`config`] (local state), [`source`] (where
//! volumes are read), [`dest`] (the agent pipe), [`send`] and [`restore`]
//! (the two data paths), [`ops`] (one module per command, over a context
//! holding configuration, metadata, the destination and LVM), [`cli`]
//! (argument parsing and printing only).

pub mod alloc;
pub mod chunk;
pub mod cli;
pub mod config;
pub mod consistency;
pub mod crypto;
pub mod dedup;
pub mod dest;
pub mod fsutil;
pub mod jobs;
pub mod keyring;
pub mod legacy;
pub mod local_meta;
pub mod lvm;
pub mod manifest;
pub mod metaseal;
pub mod ops;
pub mod output;
pub mod passphrase;
pub mod process;
pub mod progress;
pub mod prune;
pub mod qubes;
pub mod recover;
pub mod reflink;
pub mod restore;
pub mod restore_service;
pub mod send;
pub mod source;
pub mod test_hooks;
pub mod timefmt;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use crate::dest::AgentConn;
    use std::io::{Read, Write};

    /// A connection over arbitrary pipes that has said Hello, as
    /// `AgentConn::over_link` leaves it: the agent's replies come from `r`.
    pub fn connected(
        r: Box<dyn Read + Send>,
        w: Box<dyn Write + Send>,
    ) -> anyhow::Result<AgentConn> {
        let mut c = AgentConn::from_pipes(r, w, "fuzz".into());
        c.hello()?;
        Ok(c)
    }
}
