//! The comparison behind the consistency check: dom0's sessions and their
//! `info.json` digests against what the destination lists. Pure, so every
//! case is a unit test.

use super::{Kind, Problem};
use crate::chunk::sha256;
use crate::dest::client::DestSessions;
use crate::fsutil::read_bounded;
use crate::local_meta::Meta;
use crate::metaseal::MetaSeal;
use anyhow::{Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::SessionDigest;
use sparsebak_common::{SESSION_INFO_FILE, VOLUME_FILE};
use std::collections::BTreeMap;

/// A volume as dom0's metadata has it: its chain, oldest first, with the
/// sha256 of each session's `info.json`, and of `volume.json`.
#[derive(Clone, Debug, Default)]
pub struct LocalVolume {
    pub sessions: Vec<(SessionName, String)>,
    pub volume_sha256: Option<String>,
}

/// The sha256 of the file as the destination stores it: dom0's copy,
/// sealed again in format 2 (to the same bytes: [`MetaSeal`]).
fn digest_of(p: &std::path::Path, stored: impl Fn(Vec<u8>) -> Vec<u8>) -> Result<String> {
    let b = read_bounded(p, 1024 * 1024)?;
    Ok(hex::encode(sha256(&stored(b))))
}

impl LocalVolume {
    pub fn load(meta: &Meta, vol: &VolName) -> Result<Self> {
        let chain = meta.chain(vol)?;
        let seal = MetaSeal::of_local(&meta.root, vol)?;
        let mut sessions = Vec::with_capacity(chain.len());
        for s in &chain {
            let p = meta.session_dir(vol, &s.name).join(SESSION_INFO_FILE);
            sessions.push((s.name.clone(), digest_of(&p, |b| seal.info(&s.name, &b))?));
        }
        let volume_sha256 = match chain.is_empty() {
            true => None,
            false => {
                let p = meta.vol_dir(vol).join(VOLUME_FILE);
                let stored = |b: Vec<u8>| match String::from_utf8(b) {
                    Ok(t) => seal.volume(t).into_bytes(),
                    Err(e) => e.into_bytes(),
                };
                Some(digest_of(&p, stored).with_context(|| format!("volume {vol}"))?)
            }
        };
        Ok(LocalVolume {
            sessions,
            volume_sha256,
        })
    }
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

/// One of dom0's sessions against the destination's listing of it.
fn session_problem(
    vol: &VolName,
    name: &SessionName,
    digest: &str,
    newest: bool,
    dest: Option<&SessionDigest>,
) -> Option<Problem> {
    let p = |kind, msg: String| Some(Problem::new(kind, vol, msg).session(name));
    let Some(d) = dest else {
        let msg = match newest {
            true => "missing on the destination; it is dom0's newest session, so the destination \
                     lost it or presents an older state (rolled back)"
                .to_string(),
            false => "missing on the destination (dom0 committed it)".to_string(),
        };
        return p(Kind::Missing, msg);
    };
    match (&d.info_sha256, &d.problem) {
        (Some(h), _) if h == digest => None,
        (Some(h), _) => p(
            Kind::Altered,
            format!(
                "info.json on the destination differs from dom0's (sha256 {}… instead of {}…): \
                 the session directory was replaced, by an older copy of itself or otherwise",
                short(h),
                short(digest)
            ),
        ),
        (None, Some(why)) if why == "missing" => p(
            Kind::Missing,
            "info.json is missing on the destination".into(),
        ),
        (None, why) => p(
            Kind::Unreadable,
            format!(
                "info.json on the destination {}",
                why.as_deref().unwrap_or("cannot be read")
            ),
        ),
    }
}

/// Every difference between dom0's view of `vol` and the destination's.
/// Sessions the destination holds that are newer than dom0's newest are
/// not a problem: the agent committed them and dom0 never did (a crash
/// between the two commits, docs/FORMAT.md §7); the next send sets them
/// aside.
pub fn compare(vol: &VolName, local: &LocalVolume, dest: &DestSessions) -> Vec<Problem> {
    let listed: BTreeMap<&SessionName, &SessionDigest> =
        dest.sessions.iter().map(|d| (&d.name, d)).collect();
    let newest = local.sessions.last().map(|(n, _)| n);
    let mut out: Vec<Problem> = local
        .sessions
        .iter()
        .filter_map(|(name, digest)| {
            let is_newest = Some(name) == newest;
            session_problem(vol, name, digest, is_newest, listed.get(name).copied())
        })
        .collect();
    let ours: BTreeMap<&SessionName, ()> = local.sessions.iter().map(|(n, _)| (n, ())).collect();
    let mut newer = false;
    for d in &dest.sessions {
        if ours.contains_key(&d.name) {
            continue;
        }
        match newest {
            Some(n) if &d.name < n => out.push(
                Problem::new(
                    Kind::Stale,
                    vol,
                    "on the destination but not in dom0's metadata, and older than dom0's newest \
                     session (dom0 pruned it): the destination presents an older state (rolled back)",
                )
                .session(&d.name),
            ),
            _ => newer = true,
        }
    }
    if let (Some(mine), false) = (&local.volume_sha256, newer) {
        match &dest.volume_sha256 {
            None => out.push(Problem::new(
                Kind::Missing,
                vol,
                "volume.json is missing on the destination (or cannot be read)",
            )),
            Some(h) if h != mine => out.push(Problem::new(
                Kind::Stale,
                vol,
                format!(
                    "volume.json on the destination differs from dom0's (sha256 {}… instead of {}…): \
                     it is an older copy, or altered",
                    short(h),
                    short(mine)
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
