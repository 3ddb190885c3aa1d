//! Receiving a session: a tar stream is unpacked into `<vol>/S_…-tmp/`, every
//! member checked against the layout, and only `Commit` makes it visible.
//!
//! Accepted members, in this order: chunk files `<9hex>/x<16hex>` (regular
//! files, at most the header's stored-chunk limit), then `manifest`, then
//! `info.json`. A chunk may also be a hard-link member naming a chunk file
//! already in the archive (`send --dedup`, checked by
//! [`crate::dedup::member`]). Anything else (absolute paths, `..`, other
//! links, devices, directories, duplicates, a fan-out dir that doesn't match
//! the address) is refused and the temporary directory removed.

use crate::error::{AgentError, IoContext, Result};
use crate::fsutil::{fsync_dir, syncfs, write_atomic};
use crate::open_archive::{Archive, VOLUMES_DIR};
use crate::tarsession::writer::TarWriter;
use sparsebak_common::names::{parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::units::ByteOffset;
use sparsebak_common::SessionFormat;
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE, VOLUME_FILE};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest session info file accepted.
const MAX_INFO: u64 = 1024 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub files: u64,
    pub bytes: u64,
}

#[derive(PartialEq, PartialOrd)]
enum Phase {
    Chunks,
    Manifest,
    Info,
}

/// Create `d` if missing, then check it is a directory and not a symlink to
/// one: whoever else can write the backup disk must not be able to redirect
/// our writes out of the archive.
fn real_dir(d: &Path) -> Result<()> {
    match fs::create_dir(d) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(e).ctx(format_args!("cannot create {}", d.display()))
        }
        _ => {}
    }
    let m = fs::symlink_metadata(d).ctx(format_args!("cannot stat {}", d.display()))?;
    if m.is_dir() {
        return Ok(());
    }
    let what = if m.is_symlink() {
        "a symlink"
    } else {
        "not a directory"
    };
    Err(AgentError::invalid(format!(
        "{} is {what}; refusing to write through it",
        d.display()
    )))
}

/// Prepare the volume for a new session: drop stale temporary sessions, set
/// aside orphans (committed here after dom0's last known session, by a send
/// that died between the two commits), and check for rollback.
/// Does the archive's `volume.json` carry this uuid?
fn same_volume(vdir: &Path, volume_uuid: Option<&str>) -> bool {
    let Some(want) = volume_uuid else {
        return false;
    };
    let Ok(f) = fs::File::open(vdir.join(VOLUME_FILE)) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.take(64 * 1024).read_to_end(&mut buf).is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&buf)
        .ok()
        .and_then(|v| v.get("uuid").and_then(|u| u.as_str()).map(|u| u == want))
        .unwrap_or(false)
}

fn prepare_volume(
    a: &Archive,
    vol: &VolName,
    session: &SessionName,
    expect_last: Option<&SessionName>,
    volume_uuid: Option<&str>,
) -> Result<PathBuf> {
    let vdir = a.vol_dir(vol);
    real_dir(&a.dir.join(VOLUMES_DIR))?;
    real_dir(&vdir)?;
    let (committed, stale) = a.list_sessions(vol)?;
    for t in stale {
        let p = vdir.join(&t);
        fs::remove_dir_all(&p).ctx(format_args!("cannot remove stale {}", p.display()))?;
    }
    match expect_last {
        // Sessions committed here for this very volume (same uuid in the
        // archive's volume.json) by a first send that died before dom0's
        // local commit: orphans, set aside below like any other.
        None if !committed.is_empty() && !same_volume(&vdir, volume_uuid) => {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "the archive already holds {} session(s) of volume {vol} that this sparsebak does not know about; \
                     refusing to mix them (delete the volume from the archive first, or use another archive)",
                    committed.len()
                ),
            ))
        }
        Some(last) if !committed.contains(last) => {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "session {last} of volume {vol} is missing from the archive: the destination was rolled back, \
                     altered, or is not this sparsebak's archive"
                ),
            ))
        }
        _ => {}
    }
    for orphan in committed.iter().filter(|s| Some(*s) > expect_last) {
        let from = vdir.join(orphan.as_str());
        let to = vdir.join(format!("{orphan}-orphan"));
        eprintln!("sparsebak-agent: setting aside {orphan} of {vol}: it was never committed by dom0 (kept as {})", to.display());
        fs::rename(&from, &to).ctx(format_args!("cannot set aside {}", from.display()))?;
    }
    if committed
        .iter()
        .any(|s| s >= session && Some(s) <= expect_last)
    {
        return Err(AgentError::invalid(format!(
            "session {session} of {vol} is not newer than the archive's last session"
        )));
    }
    let tmp = vdir.join(session.tmp_dir_name());
    fs::create_dir(&tmp).ctx(format_args!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

/// Receive a session's tar stream into its temporary directory.
pub fn put_session<R: Read>(
    a: &Archive,
    vol: &VolName,
    session: &SessionName,
    expect_last: Option<&SessionName>,
    volume_uuid: Option<&str>,
    format: SessionFormat,
    stream: R,
) -> Result<StoreStats> {
    a.require_write()?;
    let tar = format == SessionFormat::Tar;
    let max_chunk = a.header()?.chunk_size.max_stored();
    let tmp = prepare_volume(a, vol, session, expect_last, volume_uuid)?;
    let mut linker = crate::dedup::member::Linker::new(a, vol, session, &tmp, max_chunk);
    let res = unpack(&tmp, stream, max_chunk, tar, &mut linker)
        .map_err(|e| e.prefixed(format_args!("storing {session} of {vol}")));
    if res.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

fn unpack<R: Read>(
    tmp: &Path,
    stream: R,
    max_chunk: u64,
    tar: bool,
    linker: &mut crate::dedup::member::Linker<'_>,
) -> Result<StoreStats> {
    // A tar session keeps its chunk members in one file (FORMAT.md §13).
    let mut tarw = tar.then(|| TarWriter::create(tmp)).transpose()?;
    let mut ar = tar::Archive::new(stream);
    let mut stats = StoreStats::default();
    let mut phase = Phase::Chunks;
    let mut last_addr = None;
    let entries = ar.entries().ctx("cannot read the session's tar stream")?;
    for entry in entries {
        let mut entry = entry.ctx("malformed tar stream")?;
        let name = member_name(&entry)?;
        let kind = entry.header().entry_type();
        // A hard link to a chunk already in the archive (docs/FORMAT.md §12).
        let link = kind.is_hard_link() && parse_chunk_rel_path(&name).is_ok();
        if !kind.is_file() && !link {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is not a regular file ({kind:?})"
            )));
        }
        // The entry's size, not the header field: a PAX `size` record
        // overrides the field, and that is how many bytes the copy reads.
        let size = entry.size();
        let (next, limit) = classify(&name, max_chunk, &mut last_addr)?;
        if next < phase || (next == phase && next != Phase::Chunks) {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is out of order"
            )));
        }
        phase = next;
        if link && tarw.is_some() {
            // Nothing can link into one tar file (FORMAT.md §12, §13).
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is a hard link, which a tar session cannot hold"
            )));
        }
        if link {
            stats.files += 1;
            if let crate::dedup::member::Linked::Copy(n) = linker.link(&mut entry, &name)? {
                stats.bytes += n;
            }
            continue;
        }
        if size > limit {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is {size} bytes, over the limit of {limit}"
            )));
        }
        if let (Some(w), Some(addr)) = (tarw.as_mut(), last_addr.filter(|_| phase == Phase::Chunks))
        {
            let n = w.append(addr, &mut entry, size)?;
            if n != size {
                return Err(AgentError::invalid(format!(
                    "tar member {name:?} is truncated: the stream ended after {n} of its {size} bytes"
                )));
            }
            stats.files += 1;
            stats.bytes += n;
            continue;
        }
        let n = write_member(tmp, &name, &mut entry, size)?;
        stats.files += 1;
        stats.bytes += n;
    }
    if phase != Phase::Info {
        return Err(AgentError::invalid(
            "the session's tar stream ended before its manifest and info.json",
        ));
    }
    if let Some(w) = tarw {
        w.finish()?;
    }
    Ok(stats)
}

/// A member's name, which must be UTF-8.
fn member_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
        AgentError::invalid(format!(
            "tar member name {:?} is not UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

/// The phase a member named `name` belongs to and its size limit; chunk
/// members must come in ascending address order (`last_addr`).
fn classify(
    name: &str,
    max_chunk: u64,
    last_addr: &mut Option<ByteOffset>,
) -> Result<(Phase, u64)> {
    Ok(match name {
        MANIFEST_FILE => (Phase::Manifest, u64::MAX),
        SESSION_INFO_FILE => (Phase::Info, MAX_INFO),
        _ => {
            let addr = parse_chunk_rel_path(name)
                .map_err(|e| AgentError::invalid(format!("tar member refused: {e}")))?;
            if last_addr.is_some_and(|l| addr <= l) {
                return Err(AgentError::invalid(format!(
                    "tar member {name:?} is out of address order or repeated"
                )));
            }
            *last_addr = Some(addr);
            (Phase::Chunks, max_chunk)
        }
    })
}

/// Write member `name` as a file of its own under `tmp` (its fan-out dir
/// created if needed); the bytes written, which must be all `size`.
fn write_member<R: Read>(tmp: &Path, name: &str, entry: &mut R, size: u64) -> Result<u64> {
    let path = tmp.join(name);
    if let Some(dir) = path.parent() {
        match fs::create_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(AgentError::io(
                    format_args!("cannot create {}", dir.display()),
                    e,
                ))
            }
            _ => {}
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ctx(format_args!("cannot create {}", path.display()))?;
    let n = io::copy(entry, &mut f).ctx(format_args!("cannot write {}", path.display()))?;
    if n != size {
        return Err(AgentError::invalid(format!(
            "tar member {name:?} is truncated: the stream ended after {n} of its {size} bytes"
        )));
    }
    Ok(n)
}

/// Make a received session durable, then visible, then record the volume info.
pub fn commit(a: &Archive, vol: &VolName, session: &SessionName, volume_info: &str) -> Result<()> {
    a.require_write()?;
    let vdir = a.vol_dir(vol);
    let tmp = vdir.join(session.tmp_dir_name());
    for f in [MANIFEST_FILE, SESSION_INFO_FILE] {
        if !tmp.join(f).is_file() {
            return Err(AgentError::new(
                ErrorKind::NotFound,
                format!(
                    "cannot commit {session} of {vol}: {} is missing",
                    tmp.join(f).display()
                ),
            ));
        }
    }
    syncfs(&tmp)?;
    let fin = vdir.join(session.as_str());
    fs::rename(&tmp, &fin).ctx(format_args!("cannot commit {}", fin.display()))?;
    fsync_dir(&vdir)?;
    write_atomic(&vdir.join(VOLUME_FILE), volume_info.as_bytes())
}
