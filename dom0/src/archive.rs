//! Opening the configured archive: connect to its agent, check the
//! mountpoint and that the archive there is the one this dom0 configured.

use crate::config::Config;
use crate::dest::{connect, AgentConn, TransportOptions};
use crate::meta::Meta;
use anyhow::{bail, Result};
use sparsebak_common::header::ArchiveHeader;

/// Everything a command needs: local metadata, configuration, transports.
pub struct Ctx {
    pub meta: Meta,
    pub config: Config,
    pub transport: TransportOptions,
    /// `info.json` format of sessions this run sends: `folders` or `tar`.
    pub send_format: sparsebak_common::SessionFormat,
}

/// An open archive connection.
pub struct Open {
    pub conn: AgentConn,
    pub header: ArchiveHeader,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl Ctx {
    pub fn open(&self, write: bool) -> Result<Open> {
        let d = &self.config.dest;
        let mut conn = connect(d, &self.transport)?;
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
