//! Format 2 keys at rest: dom0's copy of the master key
//! (`<meta>/archive.key`, readable by its owner only, so unattended sends
//! need no passphrase), the passphrase-wrapped copy in the archive header
//! on the destination, and the header's MAC (docs/FORMAT.md §18.3).

use crate::crypto::wrap::{self, Cost};
use crate::crypto::{ArchiveKeys, MasterKey};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::header::{ArchiveHeader, ENCRYPTION_XCHACHA, FORMAT_VERSION_ENCRYPTED};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

pub const KEY_FILE: &str = "archive.key";
const MAX_KEY_FILE: u64 = 4096;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    uuid: String,
    master_key: String,
}

pub fn key_path(meta: &Path) -> PathBuf {
    meta.join(KEY_FILE)
}

/// Write dom0's key file (mode 0600 from its creation; temp file, fsync,
/// rename, fsync dir).
pub fn save_key(meta: &Path, uuid: &str, key: &MasterKey) -> Result<()> {
    let path = key_path(meta);
    let tmp = meta.join(format!(".{KEY_FILE}.tmp"));
    let _ = fs::remove_file(&tmp);
    let body = Zeroizing::new(
        serde_json::to_string(&KeyFile {
            uuid: uuid.into(),
            master_key: key.to_hex().to_string(),
        })? + "\n",
    );
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(body.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, &path).with_context(|| format!("cannot rename {}", tmp.display()))?;
    crate::fsutil::fsync_dir(meta)
}

/// dom0's master key of archive `uuid`.
pub fn load_key(meta: &Path, uuid: &str) -> Result<MasterKey> {
    let path = key_path(meta);
    let md = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the archive is encrypted but its key file {} is missing; restore it from a backup of the \
             metadata, or recover it with the passphrase: move the metadata dir aside and run \
             `sparsebak arch-recover`",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if !md.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    if md.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} can be read by others (mode {:o}); it holds the archive's key: chmod 600 it",
            path.display(),
            md.permissions().mode() & 0o777
        );
    }
    let bytes = Zeroizing::new(crate::fsutil::read_bounded(&path, MAX_KEY_FILE)?);
    let k: KeyFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a sparsebak key file", path.display()))?;
    let hexkey = Zeroizing::new(k.master_key);
    if k.uuid != uuid {
        bail!(
            "{} holds the key of archive {}, not of this archive ({uuid})",
            path.display(),
            k.uuid
        );
    }
    MasterKey::from_hex(&hexkey).with_context(|| format!("{} is damaged", path.display()))
}

/// The keys of the archive configured in `meta`, from its key file (its
/// own uuid); `None` if there is none (format 1).
pub fn load_local_keys(meta: &Path) -> Result<Option<Arc<ArchiveKeys>>> {
    let path = key_path(meta);
    if fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = Zeroizing::new(crate::fsutil::read_bounded(&path, MAX_KEY_FILE)?);
    let k: KeyFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a sparsebak key file", path.display()))?;
    let master = load_key(meta, &k.uuid)?;
    Ok(Some(Arc::new(ArchiveKeys::derive(&master, &k.uuid))))
}

/// The header without its MAC, serialised: what the MAC covers.
fn mac_input(h: &ArchiveHeader) -> Result<Vec<u8>> {
    let mut bare = h.clone();
    bare.mac = None;
    Ok(serde_json::to_vec(&bare)?)
}

/// Turn a format 1 header into format 2 with `master` wrapped by
/// `passphrase`, and MAC it.
pub fn encrypted_header(
    mut h: ArchiveHeader,
    master: &MasterKey,
    passphrase: &[u8],
    cost: Cost,
) -> Result<ArchiveHeader> {
    h.format_version = FORMAT_VERSION_ENCRYPTED;
    h.encryption = ENCRYPTION_XCHACHA.into();
    h.key = Some(wrap::wrap(master, passphrase, &h.uuid, cost));
    let keys = ArchiveKeys::derive(master, &h.uuid);
    set_mac(&mut h, &keys)?;
    Ok(h)
}

pub fn set_mac(h: &mut ArchiveHeader, keys: &ArchiveKeys) -> Result<()> {
    h.mac = Some(hex::encode(keys.header_mac(&mac_input(h)?)));
    Ok(())
}

/// Check the header's MAC with the archive's keys.
pub fn check_mac(h: &ArchiveHeader, keys: &ArchiveKeys, what: &str) -> Result<()> {
    let tag = h
        .mac
        .as_deref()
        .and_then(|m| hex::decode(m).ok())
        .unwrap_or_default();
    if !keys.header_mac_ok(&mac_input(h)?, &tag) {
        bail!(
            "the archive header at {what} fails its authentication check: it was altered, or this key \
             belongs to another archive"
        );
    }
    Ok(())
}

/// The keys of the archive `h` describes, for a command on a configured
/// archive: from dom0's key file, checked against the header's MAC.
/// `None` for a format 1 archive.
pub fn keys_for(meta: &Path, h: &ArchiveHeader, what: &str) -> Result<Option<Arc<ArchiveKeys>>> {
    if !h.encrypted() {
        return Ok(None);
    }
    let master = load_key(meta, &h.uuid)?;
    let keys = ArchiveKeys::derive(&master, &h.uuid);
    check_mac(h, &keys, what)?;
    Ok(Some(Arc::new(keys)))
}

/// Unwrap the destination's copy of the key with `passphrase` and check
/// the header with it (arch-recover, arch-passwd).
pub fn unwrap_header(h: &ArchiveHeader, passphrase: &[u8], what: &str) -> Result<MasterKey> {
    let Some(w) = &h.key else {
        bail!(
            "the archive at {what} is not encrypted (format {})",
            h.format_version
        );
    };
    let master =
        wrap::unwrap(w, passphrase, &h.uuid).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    check_mac(h, &ArchiveKeys::derive(&master, &h.uuid), what)?;
    Ok(master)
}
