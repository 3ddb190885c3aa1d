//! Storing a session in a bucket (docs/FORMAT.md §21.2): the tar stream's
//! chunk files go into packs (uploaded by a second thread while the next
//! one fills), then the session's index, manifest and info objects; only
//! `Commit` creates the commit object, last, with `If-None-Match: *`.
//! A send that dies before it leaves objects no commit names: the session
//! does not exist.

use super::layout::{random_id, Commit, Index, Loc, Obj, MAX_INFO, MAX_MANIFEST};
use super::link::Links;
use super::resume::Held;
use super::{get, s3_err, S3Archive};
use crate::error::{AgentError, IoContext, Result};
use crate::s3::PutOutcome;
use crate::store::{checked_size, classify, member_name, truncated, Phase, Put, StoreStats};
use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::names::{parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::SessionFormat;
use std::io::Read;
use std::sync::mpsc::{sync_channel, SyncSender};

/// A stored, not yet committed session (generation 1).
pub struct Pending {
    vol: VolName,
    session: SessionName,
    /// The unfinished session this one resumed (its held index goes after the commit).
    resumed: Option<SessionName>,
    manifest: Obj,
    info: Obj,
    index: Obj,
}

/// `PutSession`.
pub fn put_session(a: &S3Archive, p: &Put<'_>, stream: &mut dyn Read) -> Result<StoreStats> {
    a.require_write()?;
    *a.pending.borrow_mut() = None;
    prepare(a, p)?;
    let max_chunk = a.header()?.chunk_size.max_stored();
    let what = format!("storing {} of {} in {}", p.session, p.vol, a.describe());
    let held = match p.resume_from {
        Some(from) => super::resume::load(a, p.vol, from)?.map(|ix| Held::new(from.clone(), ix)),
        None => None,
    };
    let (stats, index, manifest, info) =
        receive(a, p, stream, max_chunk, held).map_err(|e| e.prefixed(&what))?;
    let k = a.keys();
    let put = |name: &str, body: &[u8]| {
        a.client()
            .put(&k.object(p.vol, p.session, name, 1), body)
            .map_err(|e| a.err(e).prefixed(&what))
    };
    let index = index.encode();
    put("index", &index)?;
    put("manifest", &manifest)?;
    put("info", &info)?;
    *a.pending.borrow_mut() = Some(Pending {
        vol: p.vol.clone(),
        session: p.session.clone(),
        resumed: p.resume_from.cloned(),
        manifest: Obj::of(&manifest),
        info: Obj::of(&info),
        index: Obj::of(&index),
    });
    Ok(stats)
}

/// The checks of the file-system backend (crate::store), on commits: the
/// session dom0 last committed is there, none is newer than this one, and
/// sessions committed after dom0's last (a send that died between the two
/// commits) stop existing: their commits are deleted.
fn prepare(a: &S3Archive, p: &Put<'_>) -> Result<()> {
    let committed = get::sessions(a, p.vol)?;
    match p.expect_last {
        None if !committed.is_empty() && !same_volume(a, p.vol, &committed, p.volume_uuid) => {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "the archive already holds {} session(s) of volume {} that this sparsebak does not know about; \
                     refusing to mix them (delete the volume from the archive first, or use another archive)",
                    committed.len(), p.vol
                ),
            ))
        }
        Some(last) if !committed.contains_key(last) => {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "session {last} of volume {} is missing from the archive: the destination was rolled back, \
                     altered, or is not this sparsebak's archive", p.vol
                ),
            ))
        }
        _ => {}
    }
    for (orphan, gen) in committed.iter().filter(|(s, _)| Some(*s) > p.expect_last) {
        crate::say::say(format_args!(
            "dropping {orphan} of {}: it was never committed by dom0 (its commit is deleted)",
            p.vol
        ));
        for g in (1..=*gen).rev() {
            let key = a.keys().object(p.vol, orphan, "commit", g);
            a.client().delete(&key).map_err(|e| a.err(e))?;
        }
    }
    drop_stale_held(a, p)?;
    if committed
        .keys()
        .any(|s| s >= p.session && Some(s) <= p.expect_last)
    {
        return Err(AgentError::invalid(format!(
            "session {} of {} is not newer than the archive's last session",
            p.session, p.vol
        )));
    }
    Ok(())
}

/// Held indexes of interrupted sends this one does not resume go (their
/// packs become garbage), as the file-system backend drops stale `-tmp` dirs.
fn drop_stale_held(a: &S3Archive, p: &Put<'_>) -> Result<()> {
    let dir = a.keys().vol_dir(p.vol);
    let listed = a
        .client()
        .list_all(&dir, 10_000_000)
        .map_err(|e| a.err(e))?;
    for e in listed {
        let Some(s) = e.key[dir.len()..].strip_suffix("/held") else {
            continue;
        };
        if p.resume_from.is_some_and(|r| r.as_str() == s) {
            continue;
        }
        a.client().delete(&e.key).map_err(|e| a.err(e))?;
    }
    Ok(())
}

/// Does the volume record of the newest session carry this uuid?
fn same_volume(
    a: &S3Archive,
    vol: &VolName,
    committed: &std::collections::BTreeMap<SessionName, u32>,
    uuid: Option<&str>,
) -> bool {
    let (Some(want), Some((s, g))) = (uuid, committed.iter().next_back()) else {
        return false;
    };
    get::read_commit(a, vol, s, *g)
        .ok()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(&c.volume).ok())
        .and_then(|v| v.get("uuid").and_then(|u| u.as_str()).map(|u| u == want))
        .unwrap_or(false)
}

type Received = (StoreStats, Index, Vec<u8>, Vec<u8>);

/// The session stream, noting whether reading it failed (a broken link
/// rather than a refused member), as crate::store does.
struct Watch<'s> {
    inner: &'s mut dyn Read,
    broke: bool,
}

impl Read for Watch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        if let Err(e) = &r {
            self.broke |=
                e.kind() == std::io::ErrorKind::UnexpectedEof || e.raw_os_error().is_some();
        }
        r
    }
}

/// Read the tar stream; chunk files go to packs, uploaded by a second
/// thread (one pack in flight while the next fills). If the stream broke
/// off, what was uploaded is recorded as held (crate::s3store::resume).
fn receive(
    a: &S3Archive,
    p: &Put<'_>,
    stream: &mut dyn Read,
    max_chunk: u64,
    held: Option<Held>,
) -> Result<Received> {
    let client = a.new_client()?;
    let conf = a.conf().clone();
    let (tx, rx) = sync_channel::<(String, Vec<u8>)>(0);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<String>();
    let mut stream = Watch {
        inner: stream,
        broke: false,
    };
    std::thread::scope(|sc| {
        let up = sc.spawn(move || -> Result<()> {
            for (key, body) in rx {
                client.put(&key, &body).map_err(|e| s3_err(&conf, e))?;
                let _ = ack_tx.send(key);
            }
            Ok(())
        });
        let mut packer = Packer {
            a,
            tx,
            buf: Vec::new(),
            cur: None,
            index: Index::default(),
            held,
            links: Links::new(ack_rx),
            vol: p.vol,
            session: p.session,
        };
        let res = unpack(&mut stream, &mut packer, max_chunk);
        let keep = res.is_err() && stream.broke && p.format == SessionFormat::Folders;
        let res = res.and_then(|r| packer.flush().map(|_| r));
        let flushed = if keep { packer.flush() } else { Ok(()) };
        drop(packer.tx);
        let uploaded = up.join().expect("the pack uploader does not panic");
        if keep && flushed.is_ok() && uploaded.is_ok() && !packer.index.locs.is_empty() {
            let key = super::resume::held_key(a, p.vol, p.session);
            a.client()
                .put(&key, &packer.index.encode())
                .map_err(|e| a.err(e))?;
        }
        let (stats, manifest, info) = match (res, uploaded) {
            (_, Err(e)) | (Err(e), Ok(())) => return Err(e),
            (Ok(r), Ok(())) => r,
        };
        Ok((stats, packer.index, manifest, info))
    })
}

/// Fills packs with chunk files.
struct Packer<'a> {
    a: &'a S3Archive,
    tx: SyncSender<(String, Vec<u8>)>,
    buf: Vec<u8>,
    /// The filling pack's number in the index.
    cur: Option<u32>,
    index: Index,
    /// A resumed session: the chunk files the earlier attempt uploaded.
    held: Option<Held>,
    links: Links,
    vol: &'a VolName,
    session: &'a SessionName,
}

impl Packer<'_> {
    fn add(&mut self, addr: u64, r: &mut dyn Read, name: &str, size: u64) -> Result<()> {
        if !self.buf.is_empty() && self.buf.len() as u64 + size > self.a.conf().pack_bytes as u64 {
            self.flush()?;
        }
        let pack = match self.cur {
            Some(p) => p,
            None => {
                let id = random_id().ctx("cannot make a pack id")?;
                self.links.mine.insert(id.clone());
                self.index.packs.push(id);
                let p = self.index.packs.len() as u32 - 1;
                self.cur = Some(p);
                p
            }
        };
        let offset = self.buf.len() as u64;
        let n = r
            .take(size)
            .read_to_end(&mut self.buf)
            .ctx("cannot read the session's tar stream")? as u64;
        if n != size {
            return Err(truncated(name, n, size));
        }
        self.index.locs.push(Loc {
            addr,
            pack,
            offset,
            len: size as u32,
        });
        Ok(())
    }

    /// A link member (`send --dedup`): a reference to the chunk file it
    /// names, whose SHA-256 must be `want` (crate::s3store::link).
    fn link(&mut self, addr: u64, target: &str, want: &[u8; 32], name: &str) -> Result<()> {
        let loc = ChunkLoc::parse(target).map_err(|e| {
            AgentError::invalid(format!("link member {name:?}: target refused: {e}"))
        })?;
        let (id, l, got) = if loc.vol == *self.vol && loc.session == *self.session {
            self.links
                .own(self.a, &self.index, self.cur, &self.buf, &loc)?
        } else {
            self.links.committed(self.a, &loc)?
        };
        super::link::check(&loc, &got, want)?;
        self.reference(addr, id, l);
        Ok(())
    }

    /// Put `addr` into the index as chunk file `l` of pack `id`.
    fn reference(&mut self, addr: u64, id: String, l: Loc) {
        let n = match self.index.packs.iter().position(|p| *p == id) {
            Some(n) => n as u32,
            None => {
                self.index.packs.push(id);
                self.index.packs.len() as u32 - 1
            }
        };
        self.index.locs.push(Loc { addr, pack: n, ..l });
    }

    /// A keep member: a reference to the held chunk file at `addr`, whose
    /// stored digest must be `want`.
    fn keep(&mut self, addr: u64, want: &[u8; 32], name: &str) -> Result<()> {
        let Some(h) = self.held.as_mut() else {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} keeps a file, but this session resumes none that the archive holds"
            )));
        };
        let (id, l) = h.keep(self.a, addr, want)?;
        self.reference(addr, id, l);
        Ok(())
    }

    /// Hand the filled pack to the uploader; the lease is renewed if due.
    fn flush(&mut self) -> Result<()> {
        let Some(p) = self.cur.take() else {
            return Ok(());
        };
        let key = self.a.keys().pack(&self.index.packs[p as usize]);
        let body = std::mem::take(&mut self.buf);
        self.tx
            .send((key, body))
            .map_err(|_| AgentError::new(ErrorKind::Io, "the pack upload failed"))?;
        self.a.require_write()
    }
}

/// The stream's members in the file-system backend's order and limits:
/// chunk files by ascending address, then `manifest`, then `info.json`.
fn unpack(
    stream: &mut dyn Read,
    packer: &mut Packer<'_>,
    max_chunk: u64,
) -> Result<(StoreStats, Vec<u8>, Vec<u8>)> {
    let mut ar = tar::Archive::new(stream);
    let (mut phase, mut last_addr) = (Phase::Chunks, None);
    let (mut stats, mut manifest, mut info) = (StoreStats::default(), Vec::new(), Vec::new());
    for entry in ar.entries().ctx("cannot read the session's tar stream")? {
        let mut entry = entry.ctx("malformed tar stream")?;
        let name = member_name(&entry)?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() && parse_chunk_rel_path(&name).is_ok() {
            let (next, _) = classify(&name, max_chunk, &mut last_addr)?;
            if next != Phase::Chunks || phase != Phase::Chunks || entry.size() != 0 {
                return Err(AgentError::invalid(format!(
                    "tar member {name:?} is out of order or carries data"
                )));
            }
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            let target = target.ok_or_else(|| {
                AgentError::invalid(format!("link member {name:?} has no target"))
            })?;
            let want = crate::dedup::member::expected_hash(&mut entry, &name)?;
            let addr = last_addr.expect("a chunk member has an address").0;
            if target == name {
                packer.keep(addr, &want, &name)?;
            } else {
                packer.link(addr, &target, &want, &name)?;
            }
            stats.files += 1;
            continue;
        }
        if !kind.is_file() {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is not a regular file ({kind:?})"
            )));
        }
        let (next, limit) = classify(&name, max_chunk, &mut last_addr)?;
        if next < phase || (next == phase && next != Phase::Chunks) {
            return Err(AgentError::invalid(format!(
                "tar member {name:?} is out of order"
            )));
        }
        phase = next;
        let (limit, into) = match phase {
            Phase::Chunks => {
                let size = checked_size(&entry, &name, limit)?;
                let addr = last_addr.expect("a chunk member has an address").0;
                packer.add(addr, &mut entry, &name, size)?;
                stats.files += 1;
                stats.bytes += size;
                crate::test_hooks::crash_at_count("chunk-", stats.files);
                continue;
            }
            Phase::Manifest => (MAX_MANIFEST, &mut manifest),
            Phase::Info => (MAX_INFO, &mut info),
        };
        let size = checked_size(&entry, &name, limit)?;
        let n = entry
            .read_to_end(into)
            .ctx("cannot read the session's tar stream")? as u64;
        if n != size {
            return Err(truncated(&name, n, size));
        }
        stats.files += 1;
        stats.bytes += n;
    }
    if phase != Phase::Info {
        return Err(AgentError::invalid(
            "the session's tar stream ended before its manifest and info.json",
        ));
    }
    Ok((stats, manifest, info))
}

/// `Commit`: create the session's commit object, last of its writes.
pub fn commit(
    a: &S3Archive,
    vol: &VolName,
    session: &SessionName,
    volume_info: &str,
) -> Result<()> {
    let p = a.pending.borrow_mut().take();
    let p = p
        .filter(|p| p.vol == *vol && p.session == *session)
        .ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!("cannot commit {session} of {vol}: it was not stored in this connection"),
            )
        })?;
    a.check_lease()?;
    let c = Commit {
        session: session.to_string(),
        gen: 1,
        manifest: p.manifest,
        info: p.info,
        index: p.index,
        volume: volume_info.to_string(),
        absorbed: Vec::new(),
    };
    let body = serde_json::to_vec(&c).expect("a commit serialises");
    let key = a.keys().object(vol, session, "commit", 1);
    match a.client().put_new(&key, &body).map_err(|e| a.err(e))? {
        PutOutcome::Created => {}
        PutOutcome::Exists => {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "cannot commit {session} of {vol}: another writer committed it first ({key})"
                ),
            ))
        }
    }
    // What it resumed is its own now (its index names those packs).
    for s in p.resumed.iter().chain([session]) {
        let held = super::resume::held_key(a, vol, s);
        a.client().delete(&held).map_err(|e| a.err(e))?;
    }
    Ok(())
}
