//! Resuming an interrupted send (docs/FORMAT.md §19).
//!
//! While a session is being uploaded, dom0 keeps `resume.json` in its
//! local `S_…-tmp` directory: which session's `-tmp` directory the
//! destination holds for this volume. A send that dies (link lost, agent or
//! dom0 killed, power loss) leaves it behind. The next send of the volume
//! finds it ([`find`]), asks the agent what that directory holds
//! (`ResumeCheck`, hashed by the agent) into a local file, and reads that
//! file in address order as its chunks come by ([`Resume::holds`]): a chunk
//! whose stored hash, computed afresh from the volume, is the one the
//! destination holds at that address goes as a *keep* member instead of
//! its bytes, and the agent hashes the file once more before keeping it.
//! Everything else is sent as usual, so the session is byte for byte what
//! an uninterrupted send would have stored, and a wrong or stale record
//! can only cost a resend, never a wrong chunk.
//!
//! Memory is constant: the records go to disk and are read back in order.

use crate::dest::AgentConn;
use crate::fsutil::write_atomic;
use crate::manifest::{ChunkRef, Entry};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::linkref::{hex32, PAX_LINKPATH, PAX_SHA256};
use sparsebak_common::names::{SessionName, VolName, TMP_SUFFIX};
use sparsebak_common::proto::RESUME_RECORD;
use sparsebak_common::tarmember::member_header;
use sparsebak_common::units::{ByteOffset, Bytes, ChunkSize};
use sparsebak_common::{SessionFormat, MANIFEST_FILE};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// In a local `S_…-tmp` directory: the unfinished session the destination holds.
pub const RESUME_FILE: &str = "resume.json";
/// In the new session's local `-tmp` directory: what the destination holds,
/// as the agent reported it ([`RESUME_RECORD`]-byte records, ascending).
const HELD_FILE: &str = "resume-held";
/// In a local `-tmp` directory: the manifest lines the interrupted upload
/// had written (what dom0 sent, with the stored hash of each file).
const SENT_FILE: &str = "resume-sent";
/// The interrupted upload's manifest while the stale directories go.
const STASH: &str = ".resume-sent";
/// Largest `resume.json` read.
const MAX_STATE: u64 = 64 * 1024;

/// `resume.json`: the destination holds `volumes/<volume>/<session>-tmp/`,
/// an upload of this volume that was based on `previous` (the change
/// basis: the chain's last session then) with these chunks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    pub volume: VolName,
    pub session: SessionName,
    pub chunk_size: u64,
    pub previous: Option<SessionName>,
    pub volume_uuid: String,
}

/// What a send knows of the volume, to judge a resume state by.
pub struct Basis<'a> {
    pub vol: &'a VolName,
    pub cs: ChunkSize,
    pub last: Option<&'a SessionName>,
    pub volume_uuid: &'a str,
}

impl Basis<'_> {
    /// The state to record once the upload of `session` has started.
    pub fn state(&self, session: &SessionName) -> ResumeState {
        ResumeState {
            volume: self.vol.clone(),
            session: session.clone(),
            chunk_size: self.cs.bytes(),
            previous: self.last.cloned(),
            volume_uuid: self.volume_uuid.into(),
        }
    }
}

/// A resume state found in a stale local `-tmp` directory `dir`.
pub struct Found {
    pub state: ResumeState,
    pub dir: PathBuf,
}

/// The newest resume state left in a stale local `-tmp` directory of the
/// volume dir `vdir`, if it fits this send (`None`, with a note, if not).
pub fn find(vdir: &Path, b: &Basis<'_>) -> Option<Found> {
    let mut found: Option<Found> = None;
    for e in std::fs::read_dir(vdir).ok()?.flatten() {
        if !e.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            continue;
        }
        let Some(s) = read_state(&e.path().join(RESUME_FILE)) else {
            continue;
        };
        if found.as_ref().is_none_or(|f| s.session > f.state.session) {
            found = Some(Found {
                state: s,
                dir: e.path(),
            });
        }
    }
    let f = found?;
    let s = &f.state;
    let want = b.state(&s.session);
    if *s != want {
        log::warn!(
            "{}: not resuming the interrupted session {}: it was a send of another volume, chunk size \
             or basis (previous session {}, now {}); sending everything again",
            b.vol,
            s.session,
            s.previous.as_ref().map_or("none", |p| p.as_str()),
            b.last.map_or("none", |p| p.as_str()),
        );
        return None;
    }
    Some(f)
}

/// Keep the interrupted upload's manifest (`resume-sent`, or the `manifest`
/// a killed dom0 left) aside in `vdir` while stale directories are removed.
pub fn stash_sent(f: &Found, vdir: &Path) -> Option<PathBuf> {
    let to = vdir.join(STASH);
    [SENT_FILE, MANIFEST_FILE]
        .iter()
        .map(|n| f.dir.join(n))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::rename(p, &to).ok())
        .map(|()| to)
}

/// Put the stashed manifest into the new session's local `-tmp`.
pub fn unstash_sent(stash: &Path, tmp: &Path) -> Result<()> {
    let to = tmp.join(SENT_FILE);
    std::fs::rename(stash, &to)
        .with_context(|| format!("cannot move {} to {}", stash.display(), to.display()))
}

fn read_state(p: &Path) -> Option<ResumeState> {
    let mut buf = Vec::new();
    File::open(p)
        .ok()?
        .take(MAX_STATE)
        .read_to_end(&mut buf)
        .ok()?;
    serde_json::from_slice(&buf).ok()
}

/// `send --no-resume`: forget every interrupted session of the volume whose
/// local directory is `vdir`, so the next upload starts afresh (its
/// `PutSession` then removes what the destination holds of them). `true`
/// if there was one.
pub fn abandon(vdir: &Path) -> Result<bool> {
    let Ok(rd) = std::fs::read_dir(vdir) else {
        return Ok(false);
    };
    let mut any = false;
    for e in rd.flatten() {
        let p = e.path().join(RESUME_FILE);
        if e.file_name().to_string_lossy().ends_with(TMP_SUFFIX) && p.is_file() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            any = true;
        }
    }
    Ok(any)
}

/// Record `state` in the local `-tmp` directory `tmp`.
pub fn save(tmp: &Path, state: &ResumeState) -> Result<()> {
    write_atomic(&tmp.join(RESUME_FILE), &serde_json::to_vec_pretty(state)?)
}

/// After a failed send: if an upload started (`resume.json` was written)
/// and the agent did not refuse it (a refused session's `-tmp` is removed
/// on the destination), keep only `resume.json` in `tmp` for the next
/// send; otherwise remove `tmp`.
pub fn after_failure(tmp: &Path, refused: bool) {
    if refused || !tmp.join(RESUME_FILE).is_file() {
        let _ = std::fs::remove_dir_all(tmp);
        return;
    }
    // What this upload sent, for the next send (format 2 chunks are only
    // recognised by it).
    let _ = std::fs::rename(tmp.join(MANIFEST_FILE), tmp.join(SENT_FILE));
    if let Ok(rd) = std::fs::read_dir(tmp) {
        for e in rd.flatten() {
            if e.file_name() != RESUME_FILE && e.file_name() != SENT_FILE {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Before the local commit: nothing of the resume belongs to the session.
pub fn clear(tmp: &Path) -> Result<()> {
    for f in [RESUME_FILE, HELD_FILE, SENT_FILE] {
        match std::fs::remove_file(tmp.join(f)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", tmp.join(f).display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// One send's resume: the session it takes over, and what the destination
/// holds of it, read in address order.
#[derive(Default)]
pub struct Resume {
    /// The unfinished session whose `-tmp` directory the upload takes over.
    pub from: Option<SessionName>,
    held: Option<BufReader<File>>,
    next: Option<(u64, [u8; 32])>,
    /// The interrupted upload's manifest lines, read in step.
    sent: Option<std::io::Lines<BufReader<File>>>,
    sent_next: Option<Entry>,
}

impl Resume {
    /// Ask the agent what it holds of `found` (if any) for this send into
    /// `tmp`, the new session's local directory. An agent that cannot
    /// resume, a tar session, or nothing left mean no resume, with a note.
    pub fn start(
        conn: &mut AgentConn,
        found: Option<ResumeState>,
        tmp: &Path,
        format: SessionFormat,
        size: Bytes,
    ) -> Result<Resume> {
        let Some(st) = found else {
            return Ok(Resume::default());
        };
        let vol = &st.volume;
        if format != SessionFormat::Folders {
            log::warn!(
                "{vol}: a --tarfile session cannot resume the interrupted session {}; sending everything again",
                st.session
            );
            return Ok(Resume::default());
        }
        if !conn.can_resume() {
            log::warn!(
                "{vol}: the agent at {} (sparsebak-agent {}) cannot resume the interrupted session {}; \
                 sending everything again (install sparsebak-agent {} there to resume)",
                conn.describe(),
                conn.agent_version(),
                st.session,
                env!("CARGO_PKG_VERSION")
            );
            return Ok(Resume::default());
        }
        // Until this send's upload starts, the destination still holds the
        // old session: say so here too, in case this send dies first.
        save(tmp, &st)?;
        let path = tmp.join(HELD_FILE);
        let Some(n) = fetch(conn, &st, &path, size)? else {
            log::info!(
                "{vol}: nothing of the interrupted session {} is left on the destination; sending everything again",
                st.session
            );
            return Ok(Resume::default());
        };
        log::info!(
            "{vol}: resuming the interrupted session {}: the destination holds {n} of its chunk files",
            st.session
        );
        let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let sent = File::open(tmp.join(SENT_FILE)).ok();
        Ok(Resume {
            from: Some(st.session),
            held: Some(BufReader::with_capacity(1 << 16, f)),
            next: None,
            sent: sent.map(|f| BufReader::with_capacity(1 << 16, f).lines()),
            sent_next: None,
        })
    }

    /// The stored hash of the file the destination holds at `addr` if it
    /// holds this chunk: a file whose hash is `stored` (this send's file,
    /// when encoding is deterministic), or the file the interrupted upload
    /// sent for the same `content` (format 2 seals a chunk with a random
    /// nonce, so only dom0's record of that upload recognises it).
    pub fn kept(
        &mut self,
        addr: ByteOffset,
        stored: &[u8; 32],
        content: &[u8; 32],
    ) -> Result<Option<[u8; 32]>> {
        let Some(held) = self.held_at(addr)? else {
            return Ok(None);
        };
        if &held == stored {
            return Ok(Some(held));
        }
        Ok(match self.sent_at(addr) {
            Some(ChunkRef::Data {
                stored: s,
                content: c,
            }) if &c == content && s == held => Some(held),
            _ => None,
        })
    }

    /// The interrupted upload's manifest entry at `addr`, if it has one (a
    /// line cut short by a kill ends the list).
    fn sent_at(&mut self, addr: ByteOffset) -> Option<ChunkRef> {
        loop {
            if let Some(e) = self.sent_next {
                if e.addr > addr {
                    return None;
                }
                if e.addr == addr {
                    return Some(e.chunk);
                }
            }
            let line = self.sent.as_mut()?.next().and_then(|l| l.ok());
            self.sent_next = line.and_then(|l| Entry::parse(&l).ok());
            if self.sent_next.is_none() {
                self.sent = None;
                return None;
            }
        }
    }

    /// The hash of the file the destination holds at `addr`, if any.
    /// Asked in ascending address order.
    fn held_at(&mut self, addr: ByteOffset) -> Result<Option<[u8; 32]>> {
        loop {
            if let Some((a, h)) = self.next {
                if a > addr.0 {
                    return Ok(None);
                }
                if a == addr.0 {
                    return Ok(Some(h));
                }
            }
            let Some(r) = self.held.as_mut() else {
                return Ok(None);
            };
            let mut rec = [0u8; RESUME_RECORD];
            match r.read_exact(&mut rec) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.held = None;
                    return Ok(None);
                }
                Err(e) => return Err(e).context("cannot read the list of resumable chunks"),
            }
            let a = u64::from_be_bytes(rec[..8].try_into().expect("8 bytes"));
            self.next = Some((a, rec[8..].try_into().expect("32 bytes")));
        }
    }
}

/// Fetch every piece of what the destination holds of `st` into `path`;
/// the number of records, or `None` if nothing of it is left. Records
/// must ascend, lie on the chunk grid and within the volume (`size`).
fn fetch(
    conn: &mut AgentConn,
    st: &ResumeState,
    path: &PathBuf,
    size: Bytes,
) -> Result<Option<u64>> {
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(f);
    let (mut after, mut total) = (None::<u64>, 0u64);
    loop {
        let piece = match conn.resume_check(&st.volume, &st.session, after)? {
            Ok(p) => p,
            Err(refused) if refused.kind == sparsebak_common::proto::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(refused) => bail!(
                "cannot ask the destination what it holds of the interrupted session {} of {}: {refused}",
                st.session,
                st.volume
            ),
        };
        for rec in piece.records.chunks(RESUME_RECORD) {
            let a = u64::from_be_bytes(rec[..8].try_into().expect("8 bytes"));
            let fits = a % st.chunk_size == 0 && a < size.0.max(1);
            if after.is_some_and(|p| a <= p) || !fits {
                bail!(
                    "the agent at {} listed chunk {a:#x} of the interrupted session {} of {} out of order \
                     or outside the volume",
                    conn.describe(),
                    st.session,
                    st.volume
                );
            }
            after = Some(a);
            total += 1;
        }
        w.write_all(&piece.records)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !piece.more || piece.records.is_empty() {
            break;
        }
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(total))
}

/// The keep member for chunk `name`: a link member whose target is its own
/// name, with the stored hash the agent must find (FORMAT.md §19).
pub fn append_keep<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    stored: &[u8; 32],
) -> io::Result<()> {
    let hash = hex32(stored);
    tar.append_pax_extensions([
        (PAX_LINKPATH, name.as_bytes()),
        (PAX_SHA256, hash.as_bytes()),
    ])?;
    let h = member_header(name, 0, tar::EntryType::Link)?;
    tar.append(&h, io::empty())
}
