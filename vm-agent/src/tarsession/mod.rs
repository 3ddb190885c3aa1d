//! Tar sessions (docs/FORMAT.md §13): a session whose chunk files are kept
//! in tar *parts* instead of one file each.
//!
//! A session dir may hold, besides folder chunk files `<9hex>/x<16hex>`:
//! its own part `chunks.tar` + `chunks.idx` (written by `send --tarfile`),
//! and parts inherited by prune from pruned sessions, `parts/S_….tar` +
//! `parts/S_….idx`, named after the session that wrote them (their
//! *origin*). An address is looked up in this order: the folder chunk file,
//! then the parts by descending origin (the own part's origin is the session
//! itself, newer than any inherited one). §13.4 argues why the first hit is
//! the entry the session's manifest records.

pub mod part;
pub mod prune_parts;
pub mod writer;

use crate::dirfd::{find_dir, find_file, open_dir_chain};
use crate::open_archive::VOLUMES_DIR;
use part::Part;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::ByteOffset;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

/// A session's own tar file.
pub const TAR_FILE: &str = "chunks.tar";
/// The index of [`TAR_FILE`].
pub const IDX_FILE: &str = "chunks.idx";
/// Directory of inherited parts.
pub const PARTS_DIR: &str = "parts";
/// Suffixes of an inherited part's files.
pub const TAR_EXT: &str = ".tar";
pub const IDX_EXT: &str = ".idx";

/// Raise the soft limit on open files to the hard limit, once: reading or
/// pruning a session keeps two descriptors open per part, and a session
/// that inherited many parts through repeated prunes needs more than the
/// usual soft limit of 1024. Failure leaves the limit as it was (an open
/// that then fails is reported like any other).
pub fn raise_fd_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
            if soft < hard {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
            }
        }
    });
}

/// The inherited parts listed in a `parts` dir: their origins, unordered.
/// Names that are not `S_….idx` are ignored (never read or moved).
pub fn list_inherited(parts_path: &Path) -> io::Result<Vec<SessionName>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(parts_path)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(o) = name.strip_suffix(IDX_EXT) {
            if let Ok(o) = SessionName::new(o) {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// Open one part from its two files in `dir`.
fn open_part(
    dir: &OwnedFd,
    tar: &str,
    idx: &str,
    label: String,
    max_len: u64,
) -> Result<Option<Part>, String> {
    let open = |n: &str| find_file(dir, n).map_err(|e| format!("{label}: cannot open {n}: {e}"));
    let Some(i) = open(idx)? else {
        return Ok(None);
    };
    let t = open(tar)?.ok_or_else(|| format!("{label}: {tar} is missing"))?;
    Part::open(label, File::from(t), File::from(i), max_len).map(Some)
}

/// Every part of a committed session dir, in lookup order.
pub struct SessionParts {
    parts: Vec<Part>,
}

impl SessionParts {
    /// Open and check every part of session `s` (dir `sfd` at `spath`); an
    /// error names the part that is unusable.
    pub fn open(
        sfd: &OwnedFd,
        spath: &Path,
        s: &SessionName,
        max_len: u64,
    ) -> Result<Self, String> {
        let mut parts = Vec::new();
        if let Some(p) = open_part(sfd, TAR_FILE, IDX_FILE, format!("{s}/{TAR_FILE}"), max_len)? {
            parts.push(p);
        }
        let pdir = find_dir(sfd, PARTS_DIR).map_err(|e| format!("{s}/{PARTS_DIR}: {e}"))?;
        if let Some(pdir) = pdir {
            let mut origins = list_inherited(&spath.join(PARTS_DIR))
                .map_err(|e| format!("cannot list {s}/{PARTS_DIR}: {e}"))?;
            origins.retain(|o| o < s);
            origins.sort_by(|a, b| b.cmp(a));
            for o in origins {
                let (t, i) = (format!("{o}{TAR_EXT}"), format!("{o}{IDX_EXT}"));
                if let Some(p) = open_part(&pdir, &t, &i, format!("{s}/{PARTS_DIR}/{t}"), max_len)?
                {
                    parts.push(p);
                }
            }
        }
        Ok(SessionParts { parts })
    }

    /// Append the member for `addr` from the first part that holds it.
    pub fn read(&self, addr: ByteOffset, buf: &mut Vec<u8>) -> io::Result<bool> {
        for p in &self.parts {
            if p.read(addr, buf)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Opened sessions of one `ReadFiles` stream, so each index is checked once.
pub struct TarReads {
    max_len: u64,
    open: HashMap<SessionName, Rc<Result<SessionParts, String>>>,
    /// Parts open in `open`.
    parts: usize,
}

/// Parts kept open at once across sessions (two descriptors each); a
/// session is opened whole even if it alone has more.
const MAX_OPEN_PARTS: usize = 256;

impl TarReads {
    pub fn new(max_len: u64) -> Self {
        raise_fd_limit();
        TarReads {
            max_len,
            open: HashMap::new(),
            parts: 0,
        }
    }

    /// Serve chunk `addr` of session `s` from its parts, after its folder
    /// chunk file was found missing. `Ok(false)`: no part holds it either.
    pub fn read(
        &mut self,
        archive: &Path,
        vol: &VolName,
        s: &SessionName,
        addr: ByteOffset,
        buf: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let parts = match self.open.get(s) {
            Some(p) => p.clone(),
            None => {
                let comps = [VOLUMES_DIR, vol.as_str(), s.as_str()];
                let Some(sfd) = open_dir_chain(archive, &comps)? else {
                    return Ok(false);
                };
                let spath = archive
                    .join(VOLUMES_DIR)
                    .join(vol.as_str())
                    .join(s.as_str());
                let p = Rc::new(SessionParts::open(&sfd, &spath, s, self.max_len));
                let n = p.as_ref().as_ref().map_or(0, |p| p.parts.len());
                if self.parts + n > MAX_OPEN_PARTS {
                    self.open.clear();
                    self.parts = 0;
                }
                self.parts += n;
                self.open.insert(s.clone(), p.clone());
                p
            }
        };
        match parts.as_ref() {
            Ok(p) => p.read(addr, buf),
            Err(e) => Err(io::Error::other(e.clone())),
        }
    }
}
