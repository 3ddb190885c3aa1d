//! How one volume's metadata files are stored on the destination: as they
//! are in format 1, sealed in format 2 ([`crate::crypto::sealed`]), each
//! bound to its kind, the volume's hidden name and, for session files, the
//! session. dom0's own copies are always plain (docs/FORMAT.md §18.5).

use crate::crypto::sealed::{open_to, seal_bytes_synthetic, seal_to, MetaKind, Place};
use crate::crypto::ArchiveKeys;
use anyhow::{Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone)]
pub struct MetaSeal {
    keys: Option<Arc<ArchiveKeys>>,
    /// The volume's name on the destination.
    dir: VolName,
}

impl MetaSeal {
    /// For volume `vol` (its name is hidden in format 2).
    pub fn new(keys: Option<Arc<ArchiveKeys>>, vol: &VolName) -> Self {
        let dir = match &keys {
            Some(k) => k.hidden_name(vol),
            None => vol.clone(),
        };
        MetaSeal { keys, dir }
    }

    /// For the volume stored under `dir` on the destination, before its
    /// real name is known (arch-recover).
    pub fn for_dir(keys: Option<Arc<ArchiveKeys>>, dir: &VolName) -> Self {
        MetaSeal {
            keys,
            dir: dir.clone(),
        }
    }

    pub fn sealed(&self) -> bool {
        self.keys.is_some()
    }

    pub fn keys(&self) -> Option<&Arc<ArchiveKeys>> {
        self.keys.as_ref()
    }

    /// The volume's directory name on the destination.
    pub fn dir(&self) -> &VolName {
        &self.dir
    }

    fn context(&self, session: Option<&SessionName>) -> String {
        match session {
            Some(s) => format!("{}/{s}", self.dir),
            None => self.dir.to_string(),
        }
    }

    /// For volume `vol` of the archive whose local metadata is in `meta`
    /// (format 2 if it holds a key file).
    pub fn of_local(meta: &Path, vol: &VolName) -> Result<Self> {
        let keys = crate::keyring::load_local_keys(meta)?;
        Ok(Self::new(keys, vol))
    }

    /// `volume.json` as stored (Commit's `volume_info`); the same bytes
    /// for the same contents (a synthetic nonce), so dom0's copy can be
    /// compared with the destination's by digest.
    pub fn volume(&self, plain: String) -> String {
        match &self.keys {
            None => plain,
            Some(k) => seal_bytes_synthetic(
                k,
                self.place(MetaKind::Volume, &self.context(None)),
                plain.as_bytes(),
            ),
        }
    }

    fn place<'a>(&self, kind: MetaKind, context: &'a str) -> Place<'a> {
        Place { kind, context }
    }

    /// A session's `info.json` as stored.
    pub fn info(&self, session: &SessionName, plain: &[u8]) -> Vec<u8> {
        match &self.keys {
            None => plain.to_vec(),
            Some(k) => seal_bytes_synthetic(
                k,
                self.place(MetaKind::Info, &self.context(Some(session))),
                plain,
            )
            .into_bytes(),
        }
    }

    /// A session's manifest as stored: the local file itself, or a sealed
    /// copy written to `scratch` (the caller removes it).
    pub fn manifest(&self, session: &SessionName, local: &Path, scratch: &Path) -> Result<PathBuf> {
        let Some(k) = &self.keys else {
            return Ok(local.to_path_buf());
        };
        let ctx = self.context(Some(session));
        let mut input = std::fs::File::open(local)
            .with_context(|| format!("cannot open {}", local.display()))?;
        let out = std::fs::File::create(scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        let out = seal_to(
            k,
            self.place(MetaKind::Manifest, &ctx),
            &mut input,
            std::io::BufWriter::new(out),
        )
        .with_context(|| format!("cannot seal {}", local.display()))?;
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", scratch.display()))?;
        Ok(scratch.to_path_buf())
    }

    /// Open a stored metadata file of `kind` (of `session`, for session
    /// files) from `input` into `out`, at most `max` bytes; format 1
    /// copies it, bounded. `what` names the file in errors.
    pub fn open_to(
        &self,
        kind: MetaKind,
        session: Option<&SessionName>,
        mut input: impl BufRead,
        max: u64,
        out: &mut dyn Write,
        what: &str,
    ) -> Result<u64> {
        let Some(k) = &self.keys else {
            let n = std::io::copy(&mut (&mut input).take(max + 1), out)
                .with_context(|| format!("cannot read {what}"))?;
            anyhow::ensure!(n <= max, "{what} is larger than {max} bytes");
            return Ok(n);
        };
        let ctx = self.context(session);
        Ok(open_to(k, self.place(kind, &ctx), input, max, out, what)?)
    }

    /// [`MetaSeal::open_to`] into memory.
    pub fn open_bytes(
        &self,
        kind: MetaKind,
        session: Option<&SessionName>,
        stored: &[u8],
        max: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_to(kind, session, stored, max, &mut out, what)?;
        Ok(out)
    }
}

use std::io::Read as _;
