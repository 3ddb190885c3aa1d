//! Prune in an object-store archive (docs/FORMAT.md §21.3): nothing moves.
//! The target's next generation gets an index that points at the packs
//! where the pruned sessions' chunk files already are, and the uploaded
//! manifest and info; its commit, written last, names the sessions it
//! absorbed. Only then are the pruned sessions deleted (commits first),
//! then the target's older generations, then unreferenced packs.
//!
//! A `pruning-<gen>` marker object is written before the new generation
//! and deleted last, so [`settle`] finds an interrupted prune from one
//! listing: a marker whose generation is the target's newest commit is a
//! decided prune to finish; one above it is an attempt that never
//! committed, whose objects are removed. Every session that exists at any
//! point restores: no object a newest generation reads is deleted.

use super::layout::{parse_object_key, Commit, Index, Loc, Obj};
use super::{delete, get, S3Archive};
use crate::error::{AgentError, Result};
use crate::prune_apply::Pruned;
use crate::s3::PutOutcome;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::plan::{PlanHead, PlanReader, PLAN_FILE};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::collections::{BTreeMap, HashMap};

/// Largest plan file accepted (its lines are bounded; this bounds their number).
const MAX_PLAN: usize = 1 << 30;
/// Largest info.json in a plan (as the file-system backend).
const MAX_INFO: usize = 1024 * 1024;

/// A plan upload (`PrunePart`s), held until `Prune`.
#[derive(Default)]
pub struct Upload {
    vol: Option<VolName>,
    plan: Vec<u8>,
    manifest: Vec<u8>,
    info: Vec<u8>,
}

/// `PrunePart`: append `data` to one file of the plan upload.
pub fn put_part(a: &S3Archive, vol: &VolName, file: &str, offset: u64, data: &str) -> Result<()> {
    a.require_write()?;
    let mut up = a.plan.borrow_mut();
    if file == PLAN_FILE && offset == 0 {
        *up = Upload {
            vol: Some(vol.clone()),
            ..Upload::default()
        };
    } else if up.vol.as_ref() != Some(vol) {
        return Err(AgentError::invalid(format!(
            "no prune plan upload of {vol} is in progress (it starts with {PLAN_FILE} at offset 0)"
        )));
    }
    let (buf, max) = match file {
        PLAN_FILE => (&mut up.plan, MAX_PLAN),
        MANIFEST_FILE => (&mut up.manifest, MAX_PLAN),
        SESSION_INFO_FILE => (&mut up.info, MAX_INFO),
        _ => {
            return Err(AgentError::invalid(format!(
                "{file:?} is not a prune plan file (plan, manifest, info.json)"
            )))
        }
    };
    if buf.len() as u64 != offset {
        return Err(AgentError::invalid(format!(
            "prune plan upload of {vol}: {file} holds {} bytes, but the part starts at {offset}",
            buf.len()
        )));
    }
    if buf.len() + data.len() > max {
        return Err(AgentError::invalid(format!(
            "{file} of a prune plan is over the limit of {max} bytes"
        )));
    }
    buf.extend_from_slice(data.as_bytes());
    Ok(())
}

/// `Prune`: check the uploaded plan against the request and the archive,
/// commit the target's new generation, then delete what it absorbed.
pub fn prune(
    a: &S3Archive,
    vol: &VolName,
    target: &SessionName,
    pruned: &[SessionName],
) -> Result<Pruned> {
    a.require_write()?;
    let head = PlanHead {
        vol: vol.clone(),
        target: target.clone(),
        pruned: pruned.to_vec(),
    };
    head.check().map_err(AgentError::invalid)?;
    settle(a, vol)?;
    let up = std::mem::take(&mut *a.plan.borrow_mut());
    if up.vol.as_ref() != Some(vol) || up.manifest.is_empty() || up.info.is_empty() {
        return Err(AgentError::invalid(format!(
            "the prune plan of {vol} was not uploaded completely"
        )));
    }
    let mut r = PlanReader::open(&up.plan[..]).map_err(AgentError::invalid)?;
    let moves = r
        .by_ref()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(AgentError::invalid)?;
    if r.head != head {
        return Err(AgentError::invalid(format!(
            "the uploaded prune plan of {vol} is not the one requested"
        )));
    }
    let committed = get::sessions(a, vol)?;
    let gen = *committed.get(target).ok_or_else(|| {
        AgentError::new(
            ErrorKind::NotFound,
            format!("target session {target} of {vol} is not in the archive"),
        )
    })?;
    let tc = get::read_commit(a, vol, target, gen)?;
    let present = pruned.iter().filter(|s| committed.contains_key(*s)).count();
    if present == 0 && Obj::of(&up.manifest) == tc.manifest {
        // An earlier run finished this prune, but dom0 never heard of it.
        return Ok(Pruned {
            moved: 0,
            already_done: true,
        });
    }
    check_sessions(vol, &head, &committed, present)?;
    let index = merged_index(a, vol, &tc, pruned, &committed, &moves)?;
    commit_generation(a, vol, &tc, (&up.manifest, &up.info), &index, pruned)?;
    a.crash_at("s3-prune-committed");
    finish(a, vol, false)?;
    Ok(Pruned {
        moved: moves.len() as u64,
        already_done: false,
    })
}

/// Every pruned session is there, and none between them and the target is left out.
fn check_sessions(
    vol: &VolName,
    head: &PlanHead,
    committed: &BTreeMap<SessionName, u32>,
    present: usize,
) -> Result<()> {
    if present != head.pruned.len() {
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!(
                "{} of the {} sessions of {vol} to prune are not in the archive: \
                 the destination was altered, rolled back, or pruned by another sparsebak",
                head.pruned.len() - present,
                head.pruned.len()
            ),
        ));
    }
    if let Some(s) = committed
        .keys()
        .find(|s| *s > &head.pruned[0] && *s < &head.target && !head.pruned.contains(s))
    {
        return Err(AgentError::invalid(format!(
            "session {s} of {vol} lies between the pruned sessions and {}, but is not pruned",
            head.target
        )));
    }
    Ok(())
}

/// The target's index plus, for every move, the pruned session's entry.
fn merged_index(
    a: &S3Archive,
    vol: &VolName,
    tc: &Commit,
    pruned: &[SessionName],
    committed: &BTreeMap<SessionName, u32>,
    moves: &[sparsebak_common::plan::Move],
) -> Result<Index> {
    let max = a.header()?.chunk_size.max_stored();
    let decode = |c: &Commit| -> Result<Index> {
        let b = get::load(a, vol, c, "index", &c.index)?;
        Index::decode(&b, max)
            .map_err(|e| AgentError::invalid(format!("index of {} of {vol}: {e}", c.session)))
    };
    let mut out = decode(tc)?;
    let mut pack_no: HashMap<String, u32> = out
        .packs
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i as u32))
        .collect();
    let mut from: Vec<Option<Index>> = vec![None; pruned.len()];
    for m in moves {
        let s = &pruned[m.session];
        if from[m.session].is_none() {
            let c = get::read_commit(a, vol, s, committed[s])?;
            from[m.session] = Some(decode(&c)?);
        }
        let ix = from[m.session].as_ref().expect("loaded above");
        let l = ix.find(m.addr.0).map(|i| ix.locs[i]).ok_or_else(|| {
            AgentError::new(ErrorKind::Mismatch, format!("the prune plan moves chunk {:#x} of {s} of {vol}, which that session does not hold", m.addr.0))
        })?;
        let id = &ix.packs[l.pack as usize];
        let n = *pack_no.entry(id.clone()).or_insert_with(|| {
            out.packs.push(id.clone());
            out.packs.len() as u32 - 1
        });
        out.locs.push(Loc { pack: n, ..l });
    }
    out.locs.sort_by_key(|l| l.addr);
    if let Some(w) = out.locs.windows(2).find(|w| w[0].addr == w[1].addr) {
        return Err(AgentError::invalid(format!(
            "the prune plan of {vol} moves chunk {:#x}, which {} already holds",
            w[0].addr, tc.session
        )));
    }
    Ok(out)
}

/// Marker, then the new generation's objects, then (the lease checked) its commit.
/// Also arch-deduplicate's (crate::s3store::dedup; `pruned` empty): the
/// target's next generation with this index, manifest and info.
pub(crate) fn commit_generation(
    a: &S3Archive,
    vol: &VolName,
    tc: &Commit,
    up: (&[u8], &[u8]),
    index: &Index,
    pruned: &[SessionName],
) -> Result<()> {
    let (manifest, info) = up;
    let target = SessionName::new(&tc.session).map_err(|e| AgentError::invalid(e.to_string()))?;
    let g = tc.gen + 1;
    let k = a.keys();
    let put = |what: &str, b: &[u8]| {
        a.client()
            .put(&k.object(vol, &target, what, g), b)
            .map_err(|e| a.err(e))
    };
    put("pruning", b"")?;
    let ix = index.encode();
    put("index", &ix)?;
    put("manifest", manifest)?;
    put("info", info)?;
    let c = Commit {
        session: tc.session.clone(),
        gen: g,
        manifest: Obj::of(manifest),
        info: Obj::of(info),
        index: Obj::of(&ix),
        volume: tc.volume.clone(),
        absorbed: pruned.iter().map(|s| s.to_string()).collect(),
    };
    a.check_lease()?;
    let key = k.object(vol, &target, "commit", g);
    match a
        .client()
        .put_new(&key, &serde_json::to_vec(&c).expect("a commit serialises"))
        .map_err(|e| a.err(e))?
    {
        PutOutcome::Created => Ok(()),
        PutOutcome::Exists => Err(AgentError::new(
            ErrorKind::Mismatch,
            format!("cannot commit the prune of {vol}: another writer made {key} first"),
        )),
    }
}

/// Finish what an interrupted prune of `vol` left (opened for writing; a
/// reader needs nothing: every session that exists is whole).
pub fn settle(a: &S3Archive, vol: &VolName) -> Result<()> {
    if a.header.is_none() || !a.writable {
        return Ok(());
    }
    finish(a, vol, true)
}

/// A session's newest commit generation, its prune markers' generations,
/// and every object of it (kind, generation, key).
type Objects = (u32, Vec<u32>, Vec<(String, u32, String)>);

/// Delete what the volume's prune markers say is done with (`announce`:
/// say so, when finishing an interrupted prune).
pub(crate) fn finish(a: &S3Archive, vol: &VolName, announce: bool) -> Result<()> {
    let dir = a.keys().vol_dir(vol);
    let listed = a
        .client()
        .list_all(&dir, 10_000_000)
        .map_err(|e| a.err(e))?;
    let mut by: BTreeMap<SessionName, Objects> = BTreeMap::new();
    for e in listed {
        let Some((s, kind, g)) = parse_object_key(&e.key[dir.len()..]) else {
            continue;
        };
        let ent = by.entry(s).or_default();
        match kind {
            "commit" => ent.0 = ent.0.max(g),
            "pruning" => ent.1.push(g),
            _ => {}
        }
        ent.2.push((kind.to_string(), g, e.key.clone()));
    }
    if by.values().all(|(_, m, _)| m.is_empty()) {
        return Ok(());
    }
    a.check_lease()?;
    let mut absorbed = Vec::new();
    for (s, (newest, markers, _)) in &by {
        if markers.contains(newest) {
            if announce {
                crate::say::say(format_args!("completing a prune of volume {vol} into {s}"));
            }
            absorbed.extend(get::read_commit(a, vol, s, *newest)?.absorbed);
        }
    }
    // Absorbed sessions go whole; a session with a marker keeps only its
    // newest generation. Commits first (a session stops existing), then
    // the rest, the markers last. No other session is touched (an
    // uncommitted send of this connection among them).
    let mut doomed: Vec<(u8, &str)> = Vec::new();
    for (s, (newest, markers, objs)) in &by {
        let gone = absorbed.iter().any(|x| x == s.as_str());
        if !gone && markers.is_empty() {
            continue;
        }
        for (kind, g, key) in objs {
            if gone || g != newest || kind == "pruning" {
                let order = match kind.as_str() {
                    "commit" => 0,
                    "pruning" => 2,
                    _ => 1,
                };
                doomed.push((order, key));
            }
        }
    }
    doomed.sort();
    for (order, key) in doomed {
        if order == 1 {
            a.crash_at("s3-prune-uncommitted");
        }
        a.client().delete(key).map_err(|e| a.err(e))?;
    }
    delete::collect_garbage(a)
}
