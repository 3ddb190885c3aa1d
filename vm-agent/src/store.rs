//! Receiving a session: a tar stream is unpacked into `<vol>/S_…-tmp/`, every
//! member checked against the layout, and only `Commit` makes it visible.
//!
//! Accepted members, in this order: chunk files `<9hex>/x<16hex>` (regular
//! files, at most the header's stored-chunk limit), then `manifest`, then
//! `info.json`. A chunk may also be a hard-link member naming a chunk file
//! already in the archive (`send --dedup`, checked by
//! [`crate::dedup::member`]), or, in a session that resumes an unfinished
//! one, a keep member for a file already there ([`crate::resume`]).
//! Anything else (absolute paths, `..`, other links, devices, directories,
//! duplicates, a fan-out dir that doesn't match the address) is refused and
//! the temporary directory removed. A stream that breaks off (the link or
//! dom0 died) leaves a folders session's directory for a later send to
//! resume.

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
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest session info file accepted.
const MAX_INFO: u64 = 1024 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub files: u64,
    pub bytes: u64,
}

#[derive(PartialEq, PartialOrd)]
pub(crate) enum Phase {
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
    resume_from: Option<&SessionName>,
) -> Result<PathBuf> {
    let vdir = a.vol_dir(vol);
    real_dir(&a.dir.join(VOLUMES_DIR))?;
    real_dir(&vdir)?;
    let (committed, stale) = a.list_sessions(vol)?;
    let resumed = resume_from.map(|s| s.tmp_dir_name());
    for t in stale.into_iter().filter(|t| Some(t) != resumed.as_ref()) {
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
        crate::say::say(format_args!(
            "setting aside {orphan} of {vol}: it was never committed by dom0 (kept as {})",
            to.display()
        ));
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
    let taken = match resume_from {
        Some(from) => crate::resume::take_over(a, vol, from, &tmp)?,
        None => false,
    };
    if !taken {
        fs::create_dir(&tmp).ctx(format_args!("cannot create {}", tmp.display()))?;
    }
    Ok(tmp)
}

/// What a `PutSession` asks for.
pub struct Put<'q> {
    pub vol: &'q VolName,
    pub session: &'q SessionName,
    pub expect_last: Option<&'q SessionName>,
    pub volume_uuid: Option<&'q str>,
    pub format: SessionFormat,
    /// An unfinished session whose files this one may keep (FORMAT.md §19).
    pub resume_from: Option<&'q SessionName>,
}

/// Receive a session's tar stream into its temporary directory. If the
/// stream itself broke off (the link or dom0 died), a folders session's
/// directory is left for a later send to resume (docs/FORMAT.md §19); any
/// other failure removes it.
pub fn put_session<R: Read>(a: &Archive, p: &Put<'_>, stream: R) -> Result<StoreStats> {
    a.require_write()?;
    let tar = p.format == SessionFormat::Tar;
    if tar && p.resume_from.is_some() {
        return Err(AgentError::invalid(format!(
            "storing {} of {}: a tar session cannot resume an unfinished one",
            p.session, p.vol
        )));
    }
    let max_chunk = a.header()?.chunk_size.max_stored();
    let tmp = prepare_volume(
        a,
        p.vol,
        p.session,
        p.expect_last,
        p.volume_uuid,
        p.resume_from,
    )?;
    let mut stream = Watch {
        inner: stream,
        broke: false,
    };
    let res = (|| {
        let mut sink = Sink {
            tmp: &tmp,
            max_chunk,
            tarw: tar.then(|| TarWriter::create(&tmp)).transpose()?,
            linker: crate::dedup::member::Linker::new(a, p.vol, p.session, &tmp, max_chunk),
            reuse: match p.resume_from {
                Some(_) => Some(crate::resume::Reuse::new(&tmp, max_chunk)?),
                None => None,
            },
            stats: StoreStats::default(),
            buf: Vec::new(),
            made_dir: None,
        };
        unpack(&mut stream, &mut sink)
    })()
    .map_err(|e| e.prefixed(format_args!("storing {} of {}", p.session, p.vol)));
    let resumable = stream.broke && !tar;
    if res.is_err() && !resumable {
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

/// The session stream, noting whether reading it failed (a broken link
/// rather than a refused member).
struct Watch<R> {
    inner: R,
    broke: bool,
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r {
            // The pipe closed or failed; a frame over the limit is refused data.
            self.broke |= e.kind() == io::ErrorKind::UnexpectedEof || e.raw_os_error().is_some();
        }
        r
    }
}

/// Where the members of one session go.
struct Sink<'a> {
    tmp: &'a Path,
    max_chunk: u64,
    /// A tar session keeps its chunk members in one file (FORMAT.md §13).
    tarw: Option<TarWriter>,
    linker: crate::dedup::member::Linker<'a>,
    /// A resumed session: the earlier attempt's files (FORMAT.md §19).
    reuse: Option<crate::resume::Reuse>,
    stats: StoreStats,
    /// A chunk member's bytes, read whole (one `write` per chunk file);
    /// reused from member to member.
    buf: Vec<u8>,
    /// The fan-out directory last made (chunks come in address order, so
    /// a new one is needed once per 4096 chunks, not per chunk).
    made_dir: Option<PathBuf>,
}

fn unpack<R: Read>(stream: R, sink: &mut Sink<'_>) -> Result<StoreStats> {
    let mut ar = tar::Archive::new(stream);
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
        let (next, limit) = classify(&name, sink.max_chunk, &mut last_addr)?;
        if next < phase || (next == phase && next != Phase::Chunks) {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is out of order"
            )));
        }
        if phase == Phase::Chunks && next != Phase::Chunks {
            if let Some(r) = sink.reuse.as_mut() {
                r.finish()?;
            }
        }
        phase = next;
        match last_addr.filter(|_| phase == Phase::Chunks) {
            Some(addr) => {
                sink.chunk(&mut entry, &name, addr, link, limit)?;
                crate::test_hooks::crash_at_count("chunk-", sink.stats.files);
            }
            None => sink.file(&mut entry, &name, limit)?,
        }
    }
    if phase != Phase::Info {
        return Err(AgentError::invalid(
            "the session's tar stream ended before its manifest and info.json",
        ));
    }
    if let Some(w) = sink.tarw.take() {
        w.finish()?;
    }
    Ok(std::mem::take(&mut sink.stats))
}

impl Sink<'_> {
    /// Store chunk member `name` (at `addr`): a file, a hard link to a
    /// chunk in the archive, or a file kept from the resumed session.
    fn chunk<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        addr: ByteOffset,
        link: bool,
        limit: u64,
    ) -> Result<()> {
        // A keep member is a link member whose target is its own name.
        let keep = link
            && entry
                .link_name_bytes()
                .is_some_and(|l| *l == *name.as_bytes());
        if let Some(r) = self.reuse.as_mut() {
            r.next_member(addr, keep)?;
        }
        if link && self.tarw.is_some() {
            // Nothing can link into one tar file (FORMAT.md §12, §13).
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is a hard link, which a tar session cannot hold"
            )));
        }
        if keep {
            let Some(r) = self.reuse.as_mut() else {
                return Err(AgentError::invalid(format!(
                    "tar member {name:?} keeps a file, but this session resumes none"
                )));
            };
            r.keep(addr, &crate::dedup::member::expected_hash(entry, name)?)?;
            self.stats.files += 1;
            return Ok(());
        }
        if link {
            self.stats.files += 1;
            if let crate::dedup::member::Linked::Copy(n) = self.linker.link(entry, name)? {
                self.stats.bytes += n;
            }
            return Ok(());
        }
        let size = checked_size(entry, name, limit)?;
        let n = match self.tarw.as_mut() {
            Some(w) => w.append(addr, entry, size)?,
            None => self.write_chunk(name, entry, size)?,
        };
        if n != size {
            return Err(truncated(name, n, size));
        }
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }

    /// Write chunk member `name` as a file of its own: read whole, written
    /// with one `write`, and its writeback started at once, so the pages
    /// drain to the disk while the send goes on and the commit's `syncfs`
    /// finds little left to do. The bytes written, which must be all `size`.
    fn write_chunk<R: Read>(&mut self, name: &str, entry: &mut R, size: u64) -> Result<u64> {
        let path = self.tmp.join(name);
        if let Some(dir) = path.parent() {
            if self.made_dir.as_deref() != Some(dir) {
                make_dir(dir)?;
                self.made_dir = Some(dir.to_path_buf());
            }
        }
        self.buf.clear();
        let n = entry
            .take(size)
            .read_to_end(&mut self.buf)
            .ctx("cannot read the session's tar stream")? as u64;
        if n != size {
            return Err(truncated(name, n, size));
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(format_args!("cannot create {}", path.display()))?;
        f.write_all(&self.buf)
            .ctx(format_args!("cannot write {}", path.display()))?;
        start_writeback(&f);
        Ok(n)
    }

    /// Store `manifest` or `info.json` as a file.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        limit: u64,
    ) -> Result<()> {
        let size = checked_size(entry, name, limit)?;
        let n = write_member(self.tmp, name, entry, size)?;
        self.stats.files += 1;
        self.stats.bytes += n;
        Ok(())
    }
}

/// The member's size, within `limit`. The entry's size, not the header
/// field: a PAX `size` record overrides the field, and that is how many
/// bytes the copy reads.
pub(crate) fn checked_size<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
    limit: u64,
) -> Result<u64> {
    let size = entry.size();
    if size > limit {
        return Err(AgentError::invalid(format!(
            "tar member {name:?} is {size} bytes, over the limit of {limit}"
        )));
    }
    Ok(size)
}

pub(crate) fn truncated(name: &str, n: u64, size: u64) -> AgentError {
    AgentError::invalid(format!(
        "tar member {name:?} is truncated: the stream ended after {n} of its {size} bytes"
    ))
}

/// A member's name, which must be UTF-8.
pub(crate) fn member_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String> {
    String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
        AgentError::invalid(format!(
            "tar member name {:?} is not UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

/// The phase a member named `name` belongs to and its size limit; chunk
/// members must come in ascending address order (`last_addr`).
pub(crate) fn classify(
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

/// Create directory `dir` unless it exists.
fn make_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(AgentError::io(
            format_args!("cannot create {}", dir.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Start writeback of a file just written, without waiting for it:
/// `POSIX_FADV_DONTNEED` makes Linux start writing the file's dirty pages
/// (as `sync_file_range(SYNC_FILE_RANGE_WRITE)` would, which has no safe
/// wrapper) and drop those already clean. Advice only: it proves nothing
/// (the commit's `syncfs` does), and a failure costs only the overlap.
fn start_writeback(f: &fs::File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let _ = posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Write member `name` as a file of its own under `tmp` (its fan-out dir
/// created if needed); the bytes written, which must be all `size`.
fn write_member<R: Read>(tmp: &Path, name: &str, entry: &mut R, size: u64) -> Result<u64> {
    let path = tmp.join(name);
    if let Some(dir) = path.parent() {
        make_dir(dir)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .ctx(format_args!("cannot create {}", path.display()))?;
    let n = io::copy(entry, &mut f).ctx(format_args!("cannot write {}", path.display()))?;
    if n != size {
        return Err(truncated(name, n, size));
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
