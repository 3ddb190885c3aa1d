//! The prune journal: merge sessions into the next newer one
//! (docs/FORMAT.md, "Prune").
//!
//! dom0 computes the plan from its local manifests, the authority: the
//! target's new manifest (for every address, the newest entry among the
//! pruned sessions and the target, cut at the target's size), its new info,
//! and the chunk files to rename on the destination. Only pruned sessions'
//! surviving data entries are listed, so the cost grows with the chunks in
//! the pruned sessions, not with the volume size.
//!
//! Ordering, so that a crash never strands local metadata:
//!
//! 1. the plan is committed locally as the journal `<vol>/.prune/`;
//! 2. it is uploaded, and the agent commits its own copy before the first
//!    rename, then carries it out and answers;
//! 3. the local target's manifest and info are replaced, the pruned local
//!    sessions removed, and the journal removed last.
//!
//! While a journal exists, local metadata may name chunk files that have
//! moved, so every command that reads or writes the volume completes the
//! journal first ([`pending`], [`complete`]): the agent either carries out
//! the plan, replays its own leftover copy, or reports it already done.

use crate::dest::AgentConn;
use crate::fsutil::{fsync_dir, read_bounded, write_atomic};
use crate::local_meta::{Meta, SessionInfo};
use crate::manifest::{ChunkRef, ManifestWriter, Merged};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::plan::{end_line, Move, PlanHead, PlanReader, PLAN_FILE};
use sparsebak_common::proto::{Request, Response};
use sparsebak_common::{FORMAT_FOLDERS, FORMAT_TAR, MANIFEST_FILE, SESSION_INFO_FILE};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::RangeInclusive;
use std::path::Path;

/// A committed local plan: the prune is decided and will be completed.
pub const JOURNAL_DIR: &str = ".prune";
/// A plan being written; discarded if found.
pub const JOURNAL_TMP: &str = ".prune.tmp";
/// A completed journal being removed.
pub const JOURNAL_DONE: &str = ".prune.done";
/// Files of a journal, in upload order.
const JOURNAL_FILES: [&str; 3] = [PLAN_FILE, MANIFEST_FILE, SESSION_INFO_FILE];
/// Bytes per `PrunePart` request (the message limit is 1 MiB of JSON).
const PART: usize = 512 * 1024;

/// TEST HOOK (crate::test_hooks): abort sparsebak at a named step of a
/// prune: `journal` (local plan committed, agent not contacted),
/// `agent-done` (agent finished, local metadata untouched), `local-target`
/// (local target replaced, pruned local sessions not yet removed).
pub use crate::test_hooks::TEST_HOOK_CRASH_AT;

fn test_hook_crash_at(point: &str) {
    crate::test_hooks::crash_at(point)
}

/// What a planned prune does.
#[derive(Debug, Clone)]
pub struct Planned {
    pub head: PlanHead,
    /// Chunk files to move into the target.
    pub moves: u64,
    /// Lines of the target's new manifest.
    pub chunks: u64,
}

/// A completed prune.
#[derive(Debug, Clone)]
pub struct Completed {
    pub head: PlanHead,
    /// Chunk files the agent renamed in this run.
    pub moved: u64,
    /// The agent had finished it in an earlier, interrupted run.
    pub already_done: bool,
}

fn remove_tree(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", p.display())),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).with_context(|| format!("cannot remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// Stored bytes the target gains: exact for a session all of whose chunk
/// files move, otherwise that session's average file size per move.
fn moved_bytes(info: &SessionInfo, moves: u64) -> u64 {
    if moves >= info.stored_chunks {
        return info.stored_bytes;
    }
    (u128::from(info.stored_bytes) * u128::from(moves) / u128::from(info.stored_chunks.max(1)))
        as u64
}

/// Write the merged manifest of the target and the pruned sessions and the
/// plan (head, one move line per chunk file a pruned session gives the
/// target, end line) into `tmp`, both synced. Returns the moves per pruned
/// session, the manifest's line count and its sha256 in hex.
fn write_plan(
    tmp: &Path,
    head: &PlanHead,
    target: &SessionInfo,
    merged: Merged,
) -> Result<(Vec<u64>, u64, String)> {
    let plan_path = tmp.join(PLAN_FILE);
    let mut plan = BufWriter::new(
        File::create(&plan_path)
            .with_context(|| format!("cannot create {}", plan_path.display()))?,
    );
    let werr = |e| anyhow::Error::new(e).context(format!("cannot write {}", plan_path.display()));
    plan.write_all(head.to_text().as_bytes()).map_err(werr)?;
    let mut manifest = ManifestWriter::create(&tmp.join(MANIFEST_FILE))?;
    let mut per_session = vec![0u64; head.pruned.len()];
    for s in merged {
        let s = s?;
        manifest.push(&s.entry)?;
        if s.session == target.name || s.entry.chunk == ChunkRef::Zero {
            continue;
        }
        let session = head
            .pruned
            .iter()
            .position(|p| *p == s.session)
            .expect("merged sessions are the target and the pruned ones");
        per_session[session] += 1;
        let m = Move {
            session,
            addr: s.entry.addr,
        };
        plan.write_all(head.move_line(&m).as_bytes())
            .map_err(werr)?;
    }
    let moves: u64 = per_session.iter().sum();
    plan.write_all(end_line(moves).as_bytes()).map_err(werr)?;
    plan.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .map_err(werr)?;
    let chunks = manifest.lines;
    let digest = manifest.finish()?;
    Ok((per_session, chunks, hex::encode(digest)))
}

/// Compute the prune of `chain[sel]` into the session after it and commit
/// it as the local journal. Nothing else is changed.
pub fn plan(
    meta: &Meta,
    vol: &VolName,
    chain: &[SessionInfo],
    sel: RangeInclusive<usize>,
    seal: &crate::metaseal::MetaSeal,
) -> Result<Planned> {
    let (first, last) = (*sel.start(), *sel.end());
    if last + 1 >= chain.len() {
        bail!("internal error: prune selection includes the newest session of {vol}");
    }
    let target = &chain[last + 1];
    let pruned = &chain[first..=last];
    if let Some(s) = chain[first..=last + 1]
        .iter()
        .find(|s| ![FORMAT_FOLDERS, FORMAT_TAR].contains(&s.format.as_str()))
    {
        bail!(
            "session {} of {vol} is stored as {:?}; prune knows \"folders\" and \"tar\" sessions only",
            s.name,
            s.format
        );
    }
    let vdir = meta.vol_dir(vol);
    let tmp = vdir.join(JOURNAL_TMP);
    remove_tree(&tmp)?;
    remove_tree(&vdir.join(JOURNAL_DONE))?;
    fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let head = PlanHead {
        vol: vol.clone(),
        target: target.name.clone(),
        pruned: pruned.iter().map(|s| s.name.clone()).collect(),
    };
    let links = std::iter::once(target)
        .chain(pruned.iter().rev())
        .map(|s| (s.name.clone(), meta.manifest_path(vol, &s.name)))
        .collect();
    let merged = Merged::new(links, target.volsize.0)?;
    let (per_session, chunks, manifest_sha256) = write_plan(&tmp, &head, target, merged)?;
    let moves: u64 = per_session.iter().sum();
    let gained: u64 = pruned
        .iter()
        .zip(&per_session)
        .map(|(info, &n)| moved_bytes(info, n))
        .sum();
    // A target that inherits tar parts is recorded as "tar": its chunks
    // are no longer all plain files, so deduplication must not link to them
    // (FORMAT.md §12, §13.5).
    let format = if pruned.iter().any(|s| s.format == FORMAT_TAR) {
        FORMAT_TAR.to_string()
    } else {
        target.format.clone()
    };
    let info = SessionInfo {
        format,
        previous: pruned[0].previous.clone(),
        chunks,
        stored_chunks: target.stored_chunks + moves,
        stored_bytes: target.stored_bytes + gained,
        manifest_sha256,
        ..target.clone()
    };
    write_atomic(
        &tmp.join(SESSION_INFO_FILE),
        &serde_json::to_vec_pretty(&info)?,
    )?;
    super::stored::write_stored(&tmp, vol, &target.name, seal)?;
    fsync_dir(&tmp)?;
    let journal = vdir.join(JOURNAL_DIR);
    fs::rename(&tmp, &journal).with_context(|| format!("cannot commit {}", journal.display()))?;
    fsync_dir(&vdir)?;
    test_hook_crash_at("journal");
    Ok(Planned {
        head,
        moves,
        chunks,
    })
}

/// Volumes with a committed journal: a prune to complete before the volume
/// is used. Journals that were never committed, or were being removed, are
/// discarded on the way.
pub fn pending(meta: &Meta) -> Result<Vec<VolName>> {
    let d = meta.root.join("volumes");
    let rd = match fs::read_dir(&d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", d.display())),
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot list {}", d.display()))?;
        if let Ok(v) = VolName::new(&e.file_name().to_string_lossy()) {
            let vdir = meta.vol_dir(&v);
            remove_tree(&vdir.join(JOURNAL_TMP))?;
            remove_tree(&vdir.join(JOURNAL_DONE))?;
            if vdir.join(JOURNAL_DIR).exists() {
                out.push(v);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Send one journal file to the agent in parts.
fn upload(conn: &mut AgentConn, vol: &VolName, dir: &Path, file: &str) -> Result<()> {
    let p = dir.join(file);
    let mut f = File::open(&p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut buf = vec![0u8; PART];
    let mut offset = 0u64;
    loop {
        let mut n = 0;
        while n < PART {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
            }
        }
        if n == 0 && offset > 0 {
            return Ok(());
        }
        let data = std::str::from_utf8(&buf[..n])
            .with_context(|| format!("{} is not ASCII text", p.display()))?
            .to_string();
        conn.ok(&Request::PrunePart {
            vol: vol.clone(),
            file: file.into(),
            offset,
            data,
        })?;
        offset += n as u64;
        if n < PART {
            return Ok(());
        }
    }
}

/// Copy `src` over `dst` atomically (the manifest may be large: streamed).
fn copy_atomic(src: &Path, dst: &Path) -> Result<()> {
    let name = dst.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dst.with_file_name(format!(".{name}.tmp"));
    let mut from = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let mut to = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    std::io::copy(&mut from, &mut to).with_context(|| format!("cannot write {}", tmp.display()))?;
    to.sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    fs::rename(&tmp, dst).with_context(|| format!("cannot replace {}", dst.display()))?;
    fsync_dir(dst.parent().expect("a file in a session dir"))
}

/// Carry out the committed journal of `vol`: on the agent (idempotent),
/// then locally, then remove the journal.
pub fn complete(meta: &Meta, conn: &mut AgentConn, vol: &VolName) -> Result<Completed> {
    let vdir = meta.vol_dir(vol);
    let journal = vdir.join(JOURNAL_DIR);
    let plan_path = journal.join(PLAN_FILE);
    let f = File::open(&plan_path)
        .with_context(|| format!("cannot open prune journal {}", plan_path.display()))?;
    let head = PlanReader::open(BufReader::new(f))
        .map_err(|e| anyhow::anyhow!("{}: {e}", plan_path.display()))?
        .head;
    if &head.vol != vol {
        bail!("{} is a plan for volume {}", plan_path.display(), head.vol);
    }
    let from = super::stored::upload_dir(&journal);
    for file in JOURNAL_FILES {
        upload(conn, vol, &from, file)?;
    }
    let (moved, already_done) = match conn.request(&Request::Prune {
        vol: vol.clone(),
        target: head.target.clone(),
        pruned: head.pruned.clone(),
    })? {
        Response::Pruned {
            moved,
            already_done,
        } => (moved, already_done),
        r => bail!("unexpected answer to Prune: {r:?}"),
    };
    test_hook_crash_at("agent-done");
    apply_local(meta, vol, &head)?;
    Ok(Completed {
        head,
        moved,
        already_done,
    })
}

/// Step 3: the agent holds the merged target; make local metadata match.
/// Idempotent: every step can be repeated after a crash.
fn apply_local(meta: &Meta, vol: &VolName, head: &PlanHead) -> Result<()> {
    let vdir = meta.vol_dir(vol);
    let journal = vdir.join(JOURNAL_DIR);
    let tdir = meta.session_dir(vol, &head.target);
    copy_atomic(&journal.join(MANIFEST_FILE), &tdir.join(MANIFEST_FILE))?;
    // info.json last: until it is replaced the chain still runs through the
    // pruned sessions, whose dirs are therefore removed only after it.
    let info = read_bounded(&journal.join(SESSION_INFO_FILE), 1024 * 1024)?;
    write_atomic(&tdir.join(SESSION_INFO_FILE), &info)?;
    test_hook_crash_at("local-target");
    for s in &head.pruned {
        remove_tree(&meta.session_dir(vol, s))?;
    }
    fsync_dir(&vdir)?;
    let done = vdir.join(JOURNAL_DONE);
    remove_tree(&done)?;
    fs::rename(&journal, &done).with_context(|| format!("cannot retire {}", journal.display()))?;
    fsync_dir(&vdir)?;
    remove_tree(&done)
}

/// Names as `YYYYMMDD-HHMMSS`, for messages.
pub fn timestamps(names: &[SessionName]) -> String {
    names
        .iter()
        .map(|s| s.timestamp())
        .collect::<Vec<_>>()
        .join(", ")
}
