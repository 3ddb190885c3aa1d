//! Disaster recovery: rebuild dom0's local metadata (configuration, volume
//! and session infos, manifests) from the copies on the destination, so
//! `list`, `receive`, `verify` and later sends work again after dom0's disk
//! is lost (docs/FORMAT.md §15).
//!
//! Nothing from the destination is trusted ([`check`]): each volume is
//! checked as a whole (names, fields, chain, manifest hashes) and either
//! recovered whole or reported and left out.
//!
//! Write ordering, so an interrupted run can simply be run again:
//! 1. everything is fetched into `<meta>/.recover/volumes/<vol>/…`, each file
//!    fsynced (manifest, then info.json, then the volume's volume.json);
//! 2. `.recover/volumes` is renamed to `<meta>/volumes` and the meta dir
//!    fsynced;
//! 3. the configuration `archive.json` is written (atomically) last;
//! 4. `.recover` is removed.
//!
//! Without `archive.json` nothing else in the meta dir is used, and a meta
//! dir that has `.recover` but no `archive.json` is an interrupted recovery:
//! the next run removes `volumes/` and `.recover/` and starts again.

pub mod check;
pub mod fetch;
pub mod sealed;

use crate::config::{Config, SourceSpec, VolumeEntry, CONFIG_VERSION};
use crate::crypto::sealed::MetaKind;
use crate::crypto::{ArchiveKeys, MasterKey};
use crate::dest::{connect, AgentConn, DestSpec, TransportOptions};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::local_meta::{Meta, SessionInfo};
use crate::metaseal::MetaSeal;
use crate::passphrase::Passphrase;
use anyhow::{anyhow, bail, Context, Result};
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{Request, Response};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE, VOLUME_FILE};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The staging dir inside the meta dir; its presence marks a recovery in
/// progress.
pub const STAGING_DIR: &str = ".recover";
/// Most volumes accepted from the destination.
const MAX_VOLUMES: usize = 100_000;

/// What one recovered volume holds.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub vol: VolName,
    pub sessions: usize,
    pub manifest_bytes: u64,
}

/// The outcome of a recovery that reached the destination.
#[derive(Debug, Default)]
pub struct Outcome {
    pub uuid: String,
    pub recovered: Vec<Recovered>,
    /// Volumes (as the destination named them) that were not recovered, and why.
    pub failed: Vec<(String, anyhow::Error)>,
    /// Volumes with nothing to recover (no committed session).
    pub empty: Vec<VolName>,
    /// The configuration was written (not when every volume failed).
    pub committed: bool,
}

/// Progress of a recovery; the CLI prints it, tests may ignore it.
pub trait Report {
    fn volume_started(&self, vol: &VolName, sessions: usize);
    fn session_fetched(&self, vol: &VolName, info: &SessionInfo, manifest_bytes: u64);
    fn volume_failed(&self, vol: &str, e: &anyhow::Error);
}

/// Reports nothing.
pub struct Quiet;

impl Report for Quiet {
    fn volume_started(&self, _: &VolName, _: usize) {}
    fn session_fetched(&self, _: &VolName, _: &SessionInfo, _: u64) {}
    fn volume_failed(&self, _: &str, _: &anyhow::Error) {}
}

pub struct Options {
    pub dest: DestSpec,
    pub source: Option<SourceSpec>,
    pub transport: TransportOptions,
    /// Asked only if the archive is encrypted (format 2).
    pub passphrase: Option<Passphrase>,
}

/// Format 2: the master key, unwrapped from the header with the
/// passphrase (which also checks the header's MAC).
fn unwrap_key(opts: &Options, header: &ArchiveHeader) -> Result<Option<MasterKey>> {
    if !header.encrypted() {
        return Ok(None);
    }
    let what = opts.dest.describe();
    let Some(p) = &opts.passphrase else {
        bail!("the archive at {what} is encrypted: arch-recover needs its passphrase");
    };
    let pass = p.get("passphrase of the archive", false)?;
    Ok(Some(crate::keyring::unwrap_header(header, &pass, &what)?))
}

/// Check the meta dir can receive a recovery, clearing what an interrupted
/// one left; then return the fresh staging dir.
fn prepare(meta: &Meta) -> Result<PathBuf> {
    let root = &meta.root;
    if Config::exists(root) {
        bail!(
            "an archive is already configured in {}; arch-recover never replaces local metadata \
             (move that directory aside, or recover into another --meta-dir)",
            root.display()
        );
    }
    let staging = root.join(STAGING_DIR);
    let volumes = root.join("volumes");
    let interrupted = fs::symlink_metadata(&staging).is_ok();
    let have_volumes = fs::symlink_metadata(&volumes).is_ok();
    if have_volumes && !interrupted && fs::read_dir(&volumes)?.next().is_some() {
        bail!(
            "{} holds volume metadata but no archive configuration; arch-recover does not overwrite it \
             (move it aside first)",
            volumes.display()
        );
    }
    for d in [&volumes, &staging] {
        if fs::symlink_metadata(d).is_ok() {
            fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    fs::create_dir_all(staging.join("volumes"))
        .with_context(|| format!("cannot create {}", staging.display()))?;
    fsync_dir(root)?;
    Ok(staging)
}

/// Rebuild the metadata in `meta` from the archive at `opts.dest`. `Err`
/// only if nothing could be recovered at all (no archive, wrong meta dir,
/// lost connection before any volume); per-volume failures are in the
/// outcome. The caller holds the meta dir's lock.
pub fn recover(meta: &Meta, opts: &Options, report: &dyn Report) -> Result<Outcome> {
    let staging = prepare(meta)?;
    let res = fetch_all(meta, &staging, opts, report);
    if res.is_err() {
        // Nothing was committed: leave the meta dir as it was found.
        let _ = fs::remove_dir_all(&staging);
    }
    res
}

fn fetch_all(meta: &Meta, staging: &Path, opts: &Options, report: &dyn Report) -> Result<Outcome> {
    let d = &opts.dest;
    let mut conn = connect(d, &opts.transport)?;
    conn.require_read_meta()?;
    // The lock lets the agent complete an interrupted prune before the
    // volume's metadata is read (docs/FORMAT.md §10.4); nothing else is written.
    let opened = conn.open(&d.dest_path(), &d.mountpoint, true)?;
    let Some(text) = opened.header else {
        bail!(
            "no sparsebak archive at {} (is the right disk mounted, and --subdir right?)",
            d.describe()
        );
    };
    let header = ArchiveHeader::parse(text.as_bytes())
        .map_err(|e| anyhow!("the archive header at {}: {e}", d.describe()))?;
    let master = unwrap_key(opts, &header)?;
    let keys = master
        .as_ref()
        .map(|m| Arc::new(ArchiveKeys::derive(m, &header.uuid)));
    let (names, ignored) = match conn.request(&Request::ListVolumes)? {
        Response::Volumes { names, ignored } => (names, ignored),
        r => bail!("unexpected answer to ListVolumes: {r:?}"),
    };
    let mut out = Outcome {
        uuid: header.uuid.clone(),
        ..Default::default()
    };
    if names.len() > MAX_VOLUMES {
        bail!(
            "the destination lists {} volumes, more than {MAX_VOLUMES}",
            names.len()
        );
    }
    for name in ignored.iter().take(sparsebak_common::proto::MAX_PROBLEMS) {
        let name: String = name.chars().take(200).collect();
        let e = anyhow!(
            "volume dir {name:?} on the destination is not a volume (an invalid name, or not a \
             plain directory); not recovered"
        );
        report.volume_failed(&name, &e);
        out.failed.push((name, e));
    }
    // Each name was validated as the reply was decoded.
    for vol in names {
        let seal = MetaSeal::for_dir(keys.clone(), &vol);
        match volume(&mut conn, &header, &seal, &staging.join("volumes"), report) {
            Ok(Some(r)) => out.recovered.push(r),
            Ok(None) => out.empty.push(vol),
            Err(e) => {
                report.volume_failed(vol.as_str(), &e);
                out.failed.push((vol.to_string(), e));
                if !conn_usable(&mut conn) {
                    conn = reconnect(opts, &header)?;
                }
            }
        }
    }
    let _ = conn.close();
    if out.recovered.is_empty() && !out.failed.is_empty() {
        // Nothing to keep: leave the meta dir as it was, so a rerun (after
        // the destination is repaired) starts afresh.
        fs::remove_dir_all(staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
        return Ok(out);
    }
    if let Some(m) = &master {
        crate::keyring::save_key(&meta.root, &header.uuid, m)?;
    }
    commit(meta, staging, opts, &header, &out)?;
    out.committed = true;
    Ok(out)
}

/// Is the connection still answering (a refused piece may have dropped it)?
fn conn_usable(conn: &mut AgentConn) -> bool {
    matches!(
        conn.request(&Request::ListVolumes),
        Ok(Response::Volumes { .. })
    )
}

/// A new connection to the same archive (same header) after one was dropped.
fn reconnect(opts: &Options, header: &ArchiveHeader) -> Result<AgentConn> {
    let d = &opts.dest;
    let mut conn = connect(d, &opts.transport)?;
    let opened = conn.open(&d.dest_path(), &d.mountpoint, true)?;
    let same = opened
        .header
        .and_then(|t| ArchiveHeader::parse(t.as_bytes()).ok())
        .is_some_and(|h| h == *header);
    if !same {
        bail!(
            "the archive at {} changed while it was being recovered",
            d.describe()
        );
    }
    Ok(conn)
}

/// Fetch and check the volume stored in `seal.dir()` into `staged/<vol>`;
/// `None` if it has no session. A volume that fails leaves nothing staged.
fn volume(
    conn: &mut AgentConn,
    header: &ArchiveHeader,
    seal: &MetaSeal,
    staged: &Path,
    report: &dyn Report,
) -> Result<Option<Recovered>> {
    let dir = seal.dir();
    let (committed, _in_progress) = conn
        .list_sessions(dir)
        .with_context(|| format!("volume {dir}: cannot list its sessions"))?;
    let sessions = check::session_list(dir, &committed)?;
    let vbytes = sealed::small(
        conn,
        seal,
        MetaKind::Volume,
        None,
        VOLUME_FILE,
        check::MAX_SMALL_FILE,
    )?;
    let Some(vbytes) = vbytes else {
        if sessions.is_empty() {
            return Ok(None);
        }
        bail!(
            "volume {dir}: volume.json is missing, but {} sessions are committed",
            sessions.len()
        );
    };
    let vol = sealed::real_name(seal, &vbytes)?;
    let state = check::volume_state(&vol, &vbytes, sessions.last())?;
    report.volume_started(&vol, sessions.len());
    let vdir = staged.join(vol.as_str());
    fs::create_dir(&vdir).with_context(|| format!("cannot create {}", vdir.display()))?;
    let res = sessions_into(conn, header, seal, &vol, &sessions, &vdir, report);
    let manifest_bytes = match res {
        Ok(n) => n,
        Err(e) => {
            let _ = fs::remove_dir_all(&vdir);
            return Err(e);
        }
    };
    fsync_dir(&vdir)?;
    write_atomic(&vdir.join(VOLUME_FILE), &serde_json::to_vec_pretty(&state)?)?;
    Ok(Some(Recovered {
        vol,
        sessions: sessions.len(),
        manifest_bytes,
    }))
}

/// Fetch and check each session of `vol` into `vdir`, oldest first; the
/// manifests' total size.
fn sessions_into(
    conn: &mut AgentConn,
    header: &ArchiveHeader,
    seal: &MetaSeal,
    vol: &VolName,
    sessions: &[sparsebak_common::names::SessionName],
    vdir: &Path,
    report: &dyn Report,
) -> Result<u64> {
    let mut prev: Option<SessionInfo> = None;
    let mut manifest_bytes = 0;
    for s in sessions {
        let ibytes = sealed::small(
            conn,
            seal,
            MetaKind::Info,
            Some(s),
            &format!("{s}/{SESSION_INFO_FILE}"),
            check::MAX_SMALL_FILE,
        )?
        .ok_or_else(|| anyhow!("volume {vol}, session {s}: info.json is missing"))?;
        let info = check::session_info(vol, s, &ibytes, prev.as_ref(), header.chunk_size)?;
        let sdir = vdir.join(s.as_str());
        fs::create_dir(&sdir).with_context(|| format!("cannot create {}", sdir.display()))?;
        let mpath = sdir.join(MANIFEST_FILE);
        let (n, sha) = sealed::manifest(
            conn,
            seal,
            s,
            &format!("{s}/{MANIFEST_FILE}"),
            check::manifest_bound(&info),
            &mpath,
        )?;
        if hex::encode(sha) != info.manifest_sha256 {
            bail!(
                "volume {vol}, session {s}: the manifest's sha256 {} is not the {} its info.json records",
                hex::encode(sha),
                info.manifest_sha256
            );
        }
        check::manifest(vol, &info, &mpath)?;
        // Our own serialisation of the checked fields, as send writes it.
        write_atomic(
            &sdir.join(SESSION_INFO_FILE),
            &serde_json::to_vec_pretty(&info)?,
        )?;
        report.session_fetched(vol, &info, n);
        manifest_bytes += n;
        prev = Some(info);
    }
    Ok(manifest_bytes)
}

/// Make the staged metadata the meta dir's, configuration last.
fn commit(
    meta: &Meta,
    staging: &Path,
    opts: &Options,
    header: &ArchiveHeader,
    out: &Outcome,
) -> Result<()> {
    let root = &meta.root;
    let staged = staging.join("volumes");
    fsync_dir(&staged)?;
    let volumes = root.join("volumes");
    fs::rename(&staged, &volumes).with_context(|| {
        format!(
            "cannot rename {} to {}",
            staged.display(),
            volumes.display()
        )
    })?;
    fsync_dir(root)?;
    let config = Config {
        config_version: CONFIG_VERSION,
        uuid: header.uuid.clone(),
        source: opts.source.clone(),
        dest: opts.dest.clone(),
        chunk_size: header.chunk_size,
        compression: header.compression,
        // Unknown from the destination: the encoding of archives made
        // before it existed, which every dom0 reads (FORMAT.md §22.3).
        zstd_checksum: false,
        volumes: out
            .recovered
            .iter()
            .map(|r| {
                let e = VolumeEntry {
                    enabled: true,
                    path: None,
                    recovered: true,
                    lv: None,
                };
                (r.vol.clone(), e)
            })
            .collect(),
        qubes: Default::default(),
    };
    config.save(root)?;
    fs::remove_dir_all(staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    fsync_dir(root)
}
