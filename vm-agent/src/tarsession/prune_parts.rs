//! Tar parts in a prune (docs/FORMAT.md §13.5). The plan names, for each
//! address whose newest entry comes from a pruned session, that session
//! (`move S x<addr>`). Its folder chunk file, if present, is renamed as for
//! any session ([`crate::prune_apply`]); otherwise the entry lives in one of the
//! session's parts, and [`PruneParts::resolve`] marks that part as needed.
//! Needed parts are renamed whole into `T/parts/<origin>.{tar,idx}`: data is
//! never rewritten. Parts with no winning entry are removed with their
//! session.
//!
//! Idempotent like the rest of the prune: a part's two files are looked for
//! at their place in the pruned session and in the target, so a replay
//! after a crash between (or after) renames resolves every address to the
//! same part and finishes the moves. An index that cannot be checked marks
//! its part needed: a prune never drops data it could not examine.

use super::part::Part;
use super::{list_inherited, IDX_EXT, IDX_FILE, PARTS_DIR, TAR_EXT, TAR_FILE};
use crate::dirfd::{self, exists, find_dir, find_file};
use crate::error::{AgentError, Result};
use sparsebak_common::names::SessionName;
use sparsebak_common::plan::PlanHead;
use sparsebak_common::units::ByteOffset;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Where one file of a part is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// In the pruned session (its root for the own part, else `parts/`).
    Source,
    /// In the target's `parts/`.
    Target,
    Missing,
}

struct PartState {
    origin: SessionName,
    /// The own part of the pruned session (`chunks.*` at its root).
    own: bool,
    tar: Loc,
    idx: Loc,
    /// `None`: the index could not be checked.
    part: Option<Part>,
    needed: bool,
}

struct SessionState {
    /// The pruned session's root dir and its `parts/` dir, if present.
    root: Option<OwnedFd>,
    parts_dir: Option<OwnedFd>,
    /// By descending origin: lookup order.
    parts: Vec<PartState>,
}

pub struct PruneParts {
    sessions: Vec<SessionState>,
    target: SessionName,
    tparts: Option<OwnedFd>,
}

fn ioerr(what: impl std::fmt::Display, e: io::Error) -> AgentError {
    AgentError::io(what, e)
}

impl PruneParts {
    /// Find every part of every pruned session, wherever a crashed run left it.
    pub fn new(
        vfd: &OwnedFd,
        vdir: &Path,
        head: &PlanHead,
        tfd: &OwnedFd,
        max_len: u64,
    ) -> Result<Self> {
        super::raise_fd_limit();
        let t = &head.target;
        let tparts = find_dir(tfd, PARTS_DIR)
            .map_err(|e| ioerr(format_args!("cannot open {t}/{PARTS_DIR}"), e))?;
        let in_target = match &tparts {
            Some(_) => list_inherited(&vdir.join(t.as_str()).join(PARTS_DIR))
                .map_err(|e| ioerr(format_args!("cannot list {t}/{PARTS_DIR}"), e))?,
            None => Vec::new(),
        };
        let mut sessions = Vec::new();
        for (k, s) in head.pruned.iter().enumerate() {
            let root =
                find_dir(vfd, s.as_str()).map_err(|e| ioerr(format_args!("cannot open {s}"), e))?;
            let parts_dir = match &root {
                Some(r) => find_dir(r, PARTS_DIR)
                    .map_err(|e| ioerr(format_args!("cannot open {s}/{PARTS_DIR}"), e))?,
                None => None,
            };
            // Origins this session's parts can have: after the pruned session
            // before it, up to itself.
            let lower = k.checked_sub(1).map(|j| &head.pruned[j]);
            let in_range = |o: &SessionName| o <= s && lower.is_none_or(|l| o > l);
            let mut origins: Vec<SessionName> =
                in_target.iter().filter(|o| in_range(o)).cloned().collect();
            if parts_dir.is_some() {
                let listed = list_inherited(&vdir.join(s.as_str()).join(PARTS_DIR))
                    .map_err(|e| ioerr(format_args!("cannot list {s}/{PARTS_DIR}"), e))?;
                origins.extend(listed.into_iter().filter(|o| o < s && in_range(o)));
            }
            if exists(root.as_ref(), IDX_FILE)
                .map_err(|e| ioerr(format_args!("cannot stat {s}/{IDX_FILE}"), e.into()))?
            {
                origins.push(s.clone());
            }
            origins.sort_by(|a, b| b.cmp(a));
            origins.dedup();
            let mut st = SessionState {
                root,
                parts_dir,
                parts: Vec::new(),
            };
            for origin in origins {
                let own = &origin == s;
                let mut p = PartState {
                    origin,
                    own,
                    tar: Loc::Missing,
                    idx: Loc::Missing,
                    part: None,
                    needed: false,
                };
                p.tar = st.locate(&p, TAR_FILE, TAR_EXT, tparts.as_ref())?;
                p.idx = st.locate(&p, IDX_FILE, IDX_EXT, tparts.as_ref())?;
                let label = format!("{} of pruned {s}", p.origin);
                p.part = match (
                    st.open(&p, TAR_FILE, TAR_EXT, p.tar, tparts.as_ref()),
                    st.open(&p, IDX_FILE, IDX_EXT, p.idx, tparts.as_ref()),
                ) {
                    (Some(t), Some(i)) => match Part::open(label, t, i, max_len) {
                        Ok(part) => Some(part),
                        Err(e) => {
                            crate::say::say(format_args!(
                                "prune keeps a part it cannot check: {e}"
                            ));
                            None
                        }
                    },
                    _ => None,
                };
                p.needed = p.part.is_none();
                st.parts.push(p);
            }
            sessions.push(st);
        }
        Ok(PruneParts {
            sessions,
            target: t.clone(),
            tparts,
        })
    }

    /// Does a part of pruned session `k` hold `addr`? Marks the first one
    /// in lookup order as needed. An unchecked part (always kept) counts as
    /// holding it.
    pub fn resolve(&mut self, k: usize, addr: ByteOffset) -> Result<bool> {
        let st = &mut self.sessions[k];
        for p in st.parts.iter_mut() {
            if let Some(part) = &p.part {
                let hit = part
                    .find(addr)
                    .map_err(|e| ioerr(format_args!("cannot read the index {}", part.label), e))?;
                if hit.is_some() {
                    p.needed = true;
                    return Ok(true);
                }
            }
        }
        Ok(st.parts.iter().any(|p| p.part.is_none()))
    }

    /// Rename every needed part into `T/parts/`; `before_rename` runs before
    /// each rename (the crash test hook). Returns the files renamed.
    pub fn move_needed(
        &mut self,
        tfd: &OwnedFd,
        before_rename: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let t = self.target.clone();
        let mut moved = 0;
        for st in &self.sessions {
            for p in st.parts.iter().filter(|p| p.needed) {
                for (own_name, ext, loc) in [(TAR_FILE, TAR_EXT, p.tar), (IDX_FILE, IDX_EXT, p.idx)]
                {
                    if loc != Loc::Source {
                        continue;
                    }
                    if self.tparts.is_none() {
                        dirfd::mkdir(tfd, PARTS_DIR).map_err(|e| {
                            ioerr(format_args!("cannot create {t}/{PARTS_DIR}"), e.into())
                        })?;
                        self.tparts = find_dir(tfd, PARTS_DIR)
                            .map_err(|e| ioerr(format_args!("cannot open {t}/{PARTS_DIR}"), e))?;
                    }
                    let (src_dir, src_name) = st.source(p, own_name, ext);
                    let dst_name = format!("{}{ext}", p.origin);
                    let dst = self.tparts.as_ref().ok_or_else(|| {
                        AgentError::invalid(format!("{t}/{PARTS_DIR} is not a directory"))
                    })?;
                    let src_dir = src_dir.expect("located at the source");
                    let regular = dirfd::stat(src_dir, &src_name)
                        .map(|st| dirfd::is_regular(&st))
                        .map_err(|e| {
                            ioerr(format_args!("cannot stat part {}", p.origin), e.into())
                        })?;
                    if !regular {
                        return Err(AgentError::invalid(format!(
                            "part {} of a pruned session ({src_name}) is not a regular file; refusing to move it",
                            p.origin
                        )));
                    }
                    before_rename(moved);
                    dirfd::rename(src_dir, &src_name, dst, &dst_name).map_err(|e| {
                        ioerr(
                            format_args!(
                                "cannot move part {} into {t}/{PARTS_DIR}/{dst_name}",
                                p.origin
                            ),
                            e.into(),
                        )
                    })?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }
}

impl SessionState {
    /// The dir and name of a part file at its source place.
    fn source(&self, p: &PartState, own_name: &str, ext: &str) -> (Option<&OwnedFd>, String) {
        if p.own {
            (self.root.as_ref(), own_name.to_string())
        } else {
            (self.parts_dir.as_ref(), format!("{}{ext}", p.origin))
        }
    }

    fn locate(
        &self,
        p: &PartState,
        own_name: &str,
        ext: &str,
        tparts: Option<&OwnedFd>,
    ) -> Result<Loc> {
        let (dir, name) = self.source(p, own_name, ext);
        let err = |e| ioerr(format_args!("cannot stat part {} ({name})", p.origin), e);
        if exists(dir, &name).map_err(|e| err(e.into()))? {
            return Ok(Loc::Source);
        }
        if exists(tparts, &format!("{}{ext}", p.origin)).map_err(|e| err(e.into()))? {
            return Ok(Loc::Target);
        }
        Ok(Loc::Missing)
    }

    fn open(
        &self,
        p: &PartState,
        own_name: &str,
        ext: &str,
        loc: Loc,
        tparts: Option<&OwnedFd>,
    ) -> Option<File> {
        let (dir, name) = match loc {
            Loc::Source => self.source(p, own_name, ext),
            Loc::Target => (tparts, format!("{}{ext}", p.origin)),
            Loc::Missing => return None,
        };
        find_file(dir?, &name).ok().flatten().map(File::from)
    }
}
