//! Deleting from an object-store archive (docs/FORMAT.md §21.6) and
//! collecting the packs no session reads any more (§21.5). Order, so that a
//! crash at any point leaves every existing session whole:
//!
//! * `delete VOL`: create `volumes/<vol>/gone` (from then on the volume has
//!   no sessions for readers, and the next request that uses it finishes
//!   the deletion first, [`settle`]), delete the sessions' commits, then
//!   their other objects, then the marker; then collect garbage.
//! * `arch-delete`: delete every commit (sessions stop existing), then
//!   every other object but the header, then the header: an interrupted
//!   run leaves an archive that a second run deletes.
//! * garbage collection: under the lease, read every existing session's
//!   newest index (and every held index of an interrupted send, for the
//!   send that resumes it) and delete each pack none of them names that is older
//!   than the lease by the store's clock (a crashed writer's uncommitted
//!   packs are garbage too, but never one a live writer may still commit).

use super::layout::{Index, Keys};
use super::{get, S3Archive};
use crate::error::{AgentError, Result};
use crate::s3::PutOutcome;
use sparsebak_common::names::VolName;
use sparsebak_common::proto::ErrorKind;
use std::collections::HashSet;

/// Most objects one deletion lists.
const MAX_LISTED: usize = 10_000_000;

fn gone_key(k: &Keys<'_>, vol: &VolName) -> String {
    format!("{}gone", k.vol_dir(vol))
}

/// Is `vol` being deleted (its marker is there)?
pub fn is_gone(a: &S3Archive, vol: &VolName) -> Result<bool> {
    let key = gone_key(&a.keys(), vol);
    Ok(a.client().head(&key).map_err(|e| a.err(e))?.is_some())
}

/// `DeleteVolume`.
pub fn delete_volume(a: &S3Archive, vol: &VolName) -> Result<()> {
    a.check_lease()?;
    let dir = a.keys().vol_dir(vol);
    let listed = a
        .client()
        .list_all(&dir, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    if listed.is_empty() {
        return Err(AgentError::new(
            ErrorKind::NotFound,
            format!("volume {vol} is not in the archive"),
        ));
    }
    let marker = gone_key(&a.keys(), vol);
    if a.client().put_new(&marker, b"").map_err(|e| a.err(e))? == PutOutcome::Exists {
        crate::say::say(format_args!("finishing the interrupted deletion of {vol}"));
    }
    a.crash_at("s3-delete-marked");
    finish(a, vol)?;
    collect_garbage(a)
}

/// Delete what is left of a volume whose marker is there, the marker last.
fn finish(a: &S3Archive, vol: &VolName) -> Result<()> {
    let dir = a.keys().vol_dir(vol);
    let marker = gone_key(&a.keys(), vol);
    let listed = a
        .client()
        .list_all(&dir, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    let (commits, rest): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .filter(|e| e.key != marker)
        .partition(|e| {
            e.key
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("commit-"))
        });
    a.check_lease()?;
    for e in commits.iter().chain(&rest) {
        a.client().delete(&e.key).map_err(|e| a.err(e))?;
    }
    a.crash_at("s3-delete-emptied");
    a.client().delete(&marker).map_err(|e| a.err(e))
}

/// Before a request uses `vol`: finish its interrupted deletion, if any
/// (opened for writing), or refuse to use it (read-only).
pub fn settle(a: &S3Archive, vol: &VolName) -> Result<()> {
    if a.header.is_none() || !is_gone(a, vol)? {
        return Ok(());
    }
    if !a.writable {
        return Err(AgentError::new(
            ErrorKind::NotFound,
            format!("volume {vol} is being deleted from the archive (an interrupted delete; the next send or delete finishes it)"),
        ));
    }
    crate::say::say(format_args!("finishing the interrupted deletion of {vol}"));
    finish(a, vol)
}

/// Delete every pack no existing session's newest index names and that is
/// older than the lease.
pub fn collect_garbage(a: &S3Archive) -> Result<()> {
    let max_chunk = a.header()?.chunk_size.max_stored();
    let mut used = HashSet::new();
    let (vols, _) = get::list_volumes(a)?;
    for vol in &vols {
        // An interrupted send's held index (crate::s3store::resume) keeps
        // its packs for the send that resumes it.
        let dir = a.keys().vol_dir(vol);
        for e in a
            .client()
            .list_all(&dir, MAX_LISTED)
            .map_err(|e| a.err(e))?
        {
            let Some(s) = e.key[dir.len()..].strip_suffix("/held") else {
                continue;
            };
            if let Ok(s) = sparsebak_common::names::SessionName::new(s) {
                if let Some(ix) = super::resume::load(a, vol, &s)? {
                    used.extend(referenced(&ix));
                }
            }
        }
        for (s, g) in get::sessions(a, vol)? {
            let c = get::read_commit(a, vol, &s, g)?;
            let b = get::load(a, vol, &c, "index", &c.index)?;
            let ix = Index::decode(&b, max_chunk)
                .map_err(|e| AgentError::invalid(format!("index of {s} of {vol}: {e}")))?;
            used.extend(referenced(&ix));
        }
    }
    let dir = a.keys().data_dir();
    let page_now = a
        .client()
        .list_page(&dir, None, 1)
        .map_err(|e| a.err(e))?
        .server_time;
    let now =
        page_now.ok_or_else(|| AgentError::new(ErrorKind::Io, "the store's answer has no Date"))?;
    let listed = a
        .client()
        .list_all(&dir, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    let min_age = crate::test_hooks::gc_min_age().unwrap_or(a.conf().lease_secs);
    a.check_lease()?;
    for e in listed {
        let id = e.key[dir.len()..].strip_suffix(".pack").unwrap_or("");
        if !used.contains(id) && e.modified + min_age <= now {
            a.client().delete(&e.key).map_err(|e| a.err(e))?;
        }
    }
    Ok(())
}

/// `DeleteArchive`: the whole archive, if its header has `uuid`.
pub fn delete_archive(a: &S3Archive, uuid: &str) -> Result<()> {
    a.check_lease()?;
    let have = &a.header()?.uuid;
    if have != uuid {
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!(
                "the archive in {} has uuid {have}, not {uuid}; refusing to delete it",
                a.describe()
            ),
        ));
    }
    let root = a.keys().root.to_string();
    let header = a.keys().header();
    let lock = format!("{root}lock/");
    let listed = a
        .client()
        .list_all(&root, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    let (commits, rest): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .filter(|e| e.key != header && !e.key.starts_with(&lock))
        .partition(|e| {
            e.key
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("commit-"))
        });
    for e in commits.iter().chain(&rest) {
        a.client().delete(&e.key).map_err(|e| a.err(e))?;
    }
    a.crash_at("s3-arch-delete-emptied");
    a.client().delete(&header).map_err(|e| a.err(e))
}

/// The packs an index's entries read (an index may still list a pack no
/// entry reads any more, after arch-deduplicate).
fn referenced(ix: &Index) -> impl Iterator<Item = String> + '_ {
    ix.locs.iter().map(|l| ix.packs[l.pack as usize].clone())
}
