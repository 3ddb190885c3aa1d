//! What every operation works with: local metadata, configuration, a way to
//! reach the destination's agent and the LVM command layer. Opening the
//! configured archive checks the mountpoint and that the archive there is
//! the one this dom0 configured.

use crate::config::Config;
use crate::dest::{connect, AgentConn, DestSpec, TransportOptions};
use crate::local_meta::Meta;
use crate::lvm::Lvm;
use anyhow::{bail, Result};
use sparsebak_common::header::ArchiveHeader;

/// Starts an agent for a destination and says Hello. The real one runs a
/// transport (local process, ssh, qrexec); tests plug in an in-process agent.
pub trait Connector {
    fn connect(&self, dest: &DestSpec) -> Result<AgentConn>;
}

/// The transports of [`crate::dest`].
pub struct Transports(pub TransportOptions);

impl Transports {
    pub fn from_env() -> Self {
        Transports(TransportOptions::from_env())
    }
}

impl Connector for Transports {
    fn connect(&self, dest: &DestSpec) -> Result<AgentConn> {
        connect(dest, &self.0)
    }
}

/// Everything a command on a configured archive needs.
pub struct Ctx<'a> {
    pub meta: Meta,
    pub config: Config,
    pub connector: &'a dyn Connector,
    pub lvm: &'a dyn Lvm,
}

/// An open archive connection.
pub struct Open {
    pub conn: AgentConn,
    pub header: ArchiveHeader,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Ctx<'_> {
    pub fn open(&self, write: bool) -> Result<Open> {
        let d = &self.config.dest;
        let mut conn = self.connector.connect(d)?;
        let opened = conn.open(&d.dest_path(), &d.mountpoint, write)?;
        let Some(text) = opened.header else {
            bail!("no sparsebak archive at {} (was it initialised with arch-init, and is the right disk mounted?)", d.describe());
        };
        let header = ArchiveHeader::parse(text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", d.describe()))?;
        if header.uuid != self.config.uuid {
            bail!(
                "the archive at {} has uuid {}, but this configuration belongs to archive {}: wrong disk or path?",
                d.describe(),
                header.uuid,
                self.config.uuid
            );
        }
        if header.chunk_size != self.config.chunk_size {
            bail!(
                "the archive at {} uses another chunk size than the configuration",
                d.describe()
            );
        }
        Ok(Open {
            conn,
            header,
            free_bytes: opened.free_bytes,
            total_bytes: opened.total_bytes,
        })
    }
}
