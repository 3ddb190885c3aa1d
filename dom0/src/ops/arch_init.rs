//! `arch-init`: create a new archive on the destination and its local
//! configuration.

use super::context::Connector;
use super::resolve::Location;
use crate::config::{Config, CONFIG_VERSION};
use crate::crypto::wrap::Cost;
use crate::crypto::MasterKey;
use crate::keyring;
use crate::local_meta::Meta;
use crate::passphrase::Passphrase;
use crate::timefmt::{iso8601, now_unix};
use anyhow::{bail, Result};
use sparsebak_common::header::{ArchiveHeader, Compression};
use sparsebak_common::proto::Request;
use sparsebak_common::units::{Bytes, ChunkSize};

#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    pub location: Location,
    /// zstd[:1-19] or zlib[:0-9]; zstd:3 when `None`.
    pub compression: Option<String>,
    /// Chunk size as a multiple of 64 KiB; 1 when `None`.
    pub chunk_factor: Option<u64>,
    /// Format 2 (encrypted) with this passphrase; format 1 when `None`.
    pub encrypt: Option<Passphrase>,
}

#[derive(Clone, Debug)]
pub struct Initialised {
    /// The configuration saved.
    pub config: Config,
    pub free_bytes: u64,
    pub encrypted: bool,
}

pub fn arch_init(meta: &Meta, connector: &dyn Connector, o: &InitOptions) -> Result<Initialised> {
    let _lock = meta.lock()?;
    if Config::exists(&meta.root) {
        bail!(
            "an archive is already configured in {} (see `sparsebak list`); refusing to replace it",
            meta.root.display()
        );
    }
    let (dest, source) = o
        .location
        .resolve("arch-init needs --dest (for example --dest=internal:/mnt/backup)")?;
    let compression: Compression = o
        .compression
        .as_deref()
        .unwrap_or("zstd:3")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let chunk_size =
        ChunkSize::from_factor(o.chunk_factor.unwrap_or(1)).map_err(anyhow::Error::msg)?;
    if chunk_size.bytes() > 256 * 1024 {
        log::warn!(
            "large chunk size {}: incremental sends will carry more unchanged data",
            Bytes(chunk_size.bytes())
        );
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut header = ArchiveHeader::new(uuid.clone(), chunk_size, compression, iso8601(now_unix()));
    let mut conn = connector.connect(&dest)?;
    let opened = conn.open(&dest.dest_path(), &dest.mountpoint, true)?;
    if opened.header.is_some() {
        bail!(
            "an archive already exists at {}; refusing to overwrite it",
            dest.describe()
        );
    }
    if let Some(p) = &o.encrypt {
        let pass = p.get("passphrase for the new archive", true)?;
        let master = MasterKey::generate();
        header = keyring::encrypted_header(header, &master, &pass, Cost::for_new_wraps())?;
        // dom0's copy first: an archive whose key dom0 lost is still
        // recoverable with the passphrase, the reverse would not be.
        std::fs::create_dir_all(&meta.root)?;
        keyring::save_key(&meta.root, &uuid, &master)?;
    }
    conn.ok(&Request::InitArchive {
        header: serde_json::to_string(&header)?,
    })?;
    conn.close()?;
    let config = Config {
        config_version: CONFIG_VERSION,
        uuid,
        source,
        dest,
        chunk_size,
        compression,
        zstd_checksum: true,
        volumes: Default::default(),
        qubes: Default::default(),
    };
    config.save(&meta.root)?;
    Ok(Initialised {
        config,
        free_bytes: opened.free_bytes,
        encrypted: o.encrypt.is_some(),
    })
}
