//! `list`, `receive` and `verify` on a sparsebak 0.2 archive
//! (`<meta-dir>/default/archive.ini`; docs/FORMAT.md §14). Used when no
//! archive of our own is configured there, or with `--legacy`. Every other
//! command is refused on such a meta dir: 0.2 archives are read-only.

use super::context::{Connector, Ctx};
use super::receive::{receive_into, ReceiveOptions, Received};
use super::resolve::one_session;
use super::verify::{verify_with, Verified, VerifyOptions};
use super::Ui;
use crate::config::Config;
use crate::dest::AgentConn;
use crate::legacy::meta::LegacySession;
use crate::legacy::restore::{restore, select};
use crate::legacy::{self, LegacyArchive};
use crate::local_meta::Meta;
use crate::lvm::Lvm;
use anyhow::{bail, Result};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::proto::{Request, Response};
use sparsebak_common::units::ChunkSize;
use std::path::Path;

/// How reports name such an archive.
pub const LABEL: &str = "sparsebak 0.2 (read-only)";

/// Does a command read the meta dir's sparsebak 0.2 archive? `reads`: the
/// command is list, receive or verify; `forced`: `--legacy` was given.
/// Errors for commands that cannot run on it.
pub fn applies(meta: &Path, reads: bool, forced: bool) -> Result<bool> {
    if forced {
        if !reads {
            bail!("--legacy works only with list, receive and verify");
        }
        if !legacy::exists(meta) {
            bail!(
                "--legacy: no sparsebak 0.2 archive in {} ({} does not exist)",
                meta.display(),
                legacy::ini_path(meta).display()
            );
        }
        return Ok(true);
    }
    if Config::exists(meta) || !legacy::exists(meta) {
        return Ok(false);
    }
    if !reads {
        bail!(
            "{} holds a sparsebak 0.2 archive ({}); only list, receive and verify can read it; run arch-init to start a new archive",
            meta.display(),
            legacy::ini_path(meta).display()
        );
    }
    Ok(true)
}

/// A 0.2 archive loaded from the meta dir, and how to reach its agent.
pub struct Legacy<'a> {
    pub meta: Meta,
    pub arch: LegacyArchive,
    pub connector: &'a dyn Connector,
    pub lvm: &'a dyn Lvm,
}

impl<'a> Legacy<'a> {
    pub fn load(meta: Meta, connector: &'a dyn Connector, lvm: &'a dyn Lvm) -> Result<Self> {
        let arch = LegacyArchive::load(&meta.root)?;
        Ok(Legacy {
            meta,
            arch,
            connector,
            lvm,
        })
    }

    /// Connect to the agent at 0.2's destination and open its archive read-only.
    fn open(&self) -> Result<AgentConn> {
        let d = &self.arch.config.dest;
        let mut conn = self.connector.connect(d)?;
        match conn.request(&Request::OpenLegacy {
            dest_path: d.dest_path(),
            mountpoint: d.mountpoint.clone(),
        })? {
            Response::Opened { .. } => Ok(conn),
            r => bail!("unexpected answer to OpenLegacy: {r:?}"),
        }
    }
}

pub enum LegacyListing {
    /// Rows as for our own archives (without `recovered`); `broken` holds
    /// the errors of volumes whose metadata could not be read.
    Volumes {
        dest: String,
        chunk_size: ChunkSize,
        rows: Vec<serde_json::Value>,
        broken: Vec<String>,
    },
    Sessions {
        vol: LegacyVolName,
        chain: Vec<LegacySession>,
    },
}

pub fn list(l: &Legacy, volume: Option<&str>) -> Result<LegacyListing> {
    let arch = &l.arch;
    let Some(v) = volume else {
        let mut rows = Vec::new();
        let mut broken = Vec::new();
        for (vol, enabled) in &arch.config.volumes {
            // One volume's broken metadata must not hide the others.
            let chain = arch.chain(vol).unwrap_or_else(|e| {
                broken.push(format!("{e:#}"));
                Vec::new()
            });
            rows.push(serde_json::json!({
                "volume": vol.as_str(), "enabled": enabled, "sessions": chain.len(),
                "last": chain.last().map(|s| s.name.timestamp().to_string()),
            }));
        }
        return Ok(LegacyListing::Volumes {
            dest: arch.config.dest.describe(),
            chunk_size: arch.config.chunk_size,
            rows,
            broken,
        });
    };
    let vol = arch.volume(v)?;
    let chain = arch.chain(&vol)?;
    Ok(LegacyListing::Sessions { vol, chain })
}

pub fn receive(l: &Legacy, ui: &dyn Ui, o: &ReceiveOptions) -> Result<Received> {
    let arch = &l.arch;
    let vol = arch.volume(&o.volume)?;
    let Some(target) = o.save_to.as_deref() else {
        bail!("receive needs --save-to=PATH (a file or block device)");
    };
    let want = one_session(o.session.as_deref(), "receive")?;
    let chain = arch.chain(&vol)?;
    let sel = select(&chain, &vol, want.as_ref())?;
    let info = &chain[sel];
    let ctx = Ctx {
        meta: l.meta.clone(),
        config: arch.as_config(),
        connector: l.connector,
        lvm: l.lvm,
    };
    let report = receive_into(
        &ctx,
        ui,
        &vol,
        info.volsize,
        target,
        || l.open(),
        |conn, out, pb| restore(arch, conn, &vol, &chain, sel, Some(out), pb),
    )?;
    Ok(Received {
        vol: vol.to_string(),
        session: info.name.clone(),
        target: target.into(),
        report,
        not_latest: false,
    })
}

pub fn verify(l: &Legacy, ui: &dyn Ui, o: &VerifyOptions) -> Result<Verified> {
    let arch = &l.arch;
    let vol = arch.volume(&o.volume)?;
    let want = one_session(o.session.as_deref(), "verify")?;
    let chain = arch.chain(&vol)?;
    let sel = select(&chain, &vol, want.as_ref())?;
    let report = verify_with(
        ui,
        || l.open(),
        |conn, pb| restore(arch, conn, &vol, &chain, sel, None, pb),
    )?;
    Ok(Verified {
        vol: vol.to_string(),
        report,
    })
}
