//! What every operation works with: local metadata, configuration, a way to
//! reach the destination's agent and the LVM command layer. Opening the
//! configured archive checks the mountpoint and that the archive there is
//! the one this dom0 configured.

use crate::chunk::ChunkCodec;
use crate::config::Config;
use crate::crypto::ArchiveKeys;
use crate::dest::{connect, AgentConn, DestSpec, TransportOptions};
use crate::keyring;
use crate::local_meta::Meta;
use crate::lvm::Lvm;
use crate::metaseal::MetaSeal;
use anyhow::{bail, Result};
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::names::VolName;
use std::sync::Arc;

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
        match (self.keys()?, header.encrypted()) {
            (Some(k), true) => {
                keyring::check_mac(&header, &k, &d.describe())?;
                conn.hide_names(k);
            }
            (None, false) => {}
            (Some(_), false) => bail!(
                "the archive at {} is not encrypted, but this configuration's archive is (its key is {}): \
                 wrong disk, or the destination's archive was replaced",
                d.describe(),
                keyring::key_path(&self.meta.root).display()
            ),
            (None, true) => {
                keyring::load_key(&self.meta.root, &header.uuid)?;
                bail!("{}: encrypted archive without a key", d.describe());
            }
        }
        Ok(Open {
            conn,
            header,
            free_bytes: opened.free_bytes,
            total_bytes: opened.total_bytes,
        })
    }
}

impl Ctx<'_> {
    /// Format 2: the archive's keys, from dom0's key file (`None` when
    /// there is none: format 1). [`Ctx::open`] checks that the destination
    /// agrees before anything is read or written.
    pub fn keys(&self) -> Result<Option<Arc<ArchiveKeys>>> {
        let path = keyring::key_path(&self.meta.root);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let master = keyring::load_key(&self.meta.root, &self.config.uuid)?;
        Ok(Some(Arc::new(ArchiveKeys::derive(
            &master,
            &self.config.uuid,
        ))))
    }

    /// How the chunks of the volume whose uuid is `volume_uuid` are
    /// encoded, decoded and digested.
    pub fn chunk_codec(&self, volume_uuid: &str) -> Result<ChunkCodec> {
        let c = self.config.compression;
        Ok(match self.keys()? {
            None => ChunkCodec::plain(c),
            Some(k) => ChunkCodec::sealed(c, k, volume_uuid),
        }
        .with_zstd_checksum(self.config.zstd_checksum))
    }

    /// The codec of a volume that has been sent (restore, verify, diff).
    pub fn codec_of(&self, vol: &VolName) -> Result<ChunkCodec> {
        let uuid = match self.meta.load_volume(vol)? {
            Some(s) => s.uuid,
            None => String::new(),
        };
        self.chunk_codec(&uuid)
    }

    /// How `vol`'s metadata files are stored on the destination.
    pub fn meta_seal(&self, vol: &VolName) -> Result<MetaSeal> {
        Ok(MetaSeal::new(self.keys()?, vol))
    }
}
