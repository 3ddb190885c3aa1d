//! Reading an object-store archive: listings (only commits make a session
//! exist), `ReadFiles` (manifest and info checked against the commit's
//! sha256; chunk files by ranged reads of packs, neighbours coalesced),
//! `ReadMeta` and `SessionDigests` (docs/FORMAT.md §21.2).

use super::layout::{parse_commit_key, Commit, Index, Loc, Obj, MAX_COMMIT};
use super::S3Archive;
use crate::backend::Input;
use crate::error::{AgentError, Result};
use sparsebak_common::names::{parse_chunk_rel_path, SessionName, VolName};
use sparsebak_common::proto::{
    read_frame, write_frame, ErrorKind, Response, SessionDigest, DIGEST_PAGE, FILE_DATA,
    FILE_MISSING, FILE_REFUSED, MAX_INFO_FILE, MAX_PROBLEMS,
};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE, VOLUME_FILE};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

/// Most objects one listing may return.
const MAX_LISTED: usize = 10_000_000;
/// Most bytes one coalesced ranged read fetches.
const WINDOW: u64 = 4 << 20;

/// Committed sessions of `vol` and each one's newest generation.
pub fn sessions(a: &S3Archive, vol: &VolName) -> Result<BTreeMap<SessionName, u32>> {
    a.header()?;
    let dir = a.keys().vol_dir(vol);
    let listed = a
        .client()
        .list_all(&dir, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    let mut out = BTreeMap::new();
    for e in listed {
        if let Some((s, g)) = parse_commit_key(&e.key[dir.len()..]) {
            let top = out.entry(s).or_insert(g);
            *top = (*top).max(g);
        }
    }
    Ok(out)
}

/// Volumes with objects, and names under `volumes/` that are not volumes.
pub fn list_volumes(a: &S3Archive) -> Result<(Vec<VolName>, Vec<String>)> {
    a.header()?;
    let dir = a.keys().volumes();
    let listed = a
        .client()
        .list_all(&dir, MAX_LISTED)
        .map_err(|e| a.err(e))?;
    let (mut names, mut ignored, mut gone) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for e in listed {
        let rel = &e.key[dir.len()..];
        let first = rel.split('/').next().unwrap_or("");
        if rel.strip_prefix(first) == Some("/gone") {
            gone.push(first.to_string()); // being deleted (crate::s3store::delete)
        }
        match VolName::new(first) {
            Ok(v) => {
                names.insert(v);
            }
            Err(_) if ignored.len() < MAX_PROBLEMS => {
                ignored.insert(first.chars().take(200).collect::<String>());
            }
            Err(_) => {}
        }
    }
    names.retain(|v: &VolName| !gone.iter().any(|g| g == v.as_str()));
    Ok((names.into_iter().collect(), ignored.into_iter().collect()))
}

/// Session `s`'s commit of generation `gen`.
pub fn read_commit(a: &S3Archive, vol: &VolName, s: &SessionName, gen: u32) -> Result<Commit> {
    let key = a.keys().object(vol, s, "commit", gen);
    let b = a
        .client()
        .get(&key, MAX_COMMIT)
        .map_err(|e| a.err(e))?
        .ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!("session {s} of volume {vol} is not in the archive"),
            )
        })?;
    Commit::parse(&b, s, gen).map_err(|m| {
        AgentError::new(
            ErrorKind::Mismatch,
            format!("{key} is not a commit of {s}: {m}"),
        )
    })
}

/// One of a committed session's objects, checked against its commit.
pub fn load(a: &S3Archive, vol: &VolName, c: &Commit, what: &str, obj: &Obj) -> Result<Vec<u8>> {
    let s = SessionName::new(&c.session).map_err(|e| AgentError::invalid(e.to_string()))?;
    let key = a.keys().object(vol, &s, what, c.gen);
    let b = a.client().get(&key, obj.size).map_err(|e| a.err(e))?;
    match b {
        Some(b) if Obj::of(&b) == *obj => Ok(b),
        Some(_) => Err(AgentError::new(
            ErrorKind::Mismatch,
            format!("{what} of session {s} of volume {vol} ({key}) does not match its commit"),
        )),
        None => Err(AgentError::new(
            ErrorKind::NotFound,
            format!("{what} of session {s} of volume {vol} ({key}) is missing"),
        )),
    }
}

/// A committed session as readers use it.
struct Loaded {
    commit: Commit,
    index: Index,
}

/// `ReadFiles` state: the volume's sessions, those opened, and one
/// coalesced read per session.
struct Reader<'a> {
    a: &'a S3Archive,
    vol: &'a VolName,
    committed: BTreeMap<SessionName, u32>,
    open: HashMap<SessionName, std::result::Result<Loaded, String>>,
    windows: HashMap<SessionName, (u32, u64, Vec<u8>)>,
    max_chunk: u64,
}

impl Reader<'_> {
    fn session(&mut self, s: &SessionName) -> Option<std::result::Result<&Loaded, String>> {
        let gen = *self.committed.get(s)?;
        let (a, vol, max) = (self.a, self.vol, self.max_chunk);
        let got = self.open.entry(s.clone()).or_insert_with(|| {
            let commit = read_commit(a, vol, s, gen).map_err(|e| e.message)?;
            let ix = load(a, vol, &commit, "index", &commit.index).map_err(|e| e.message)?;
            let index = Index::decode(&ix, max)
                .map_err(|e| format!("index of session {s} of volume {vol}: {e}"))?;
            Ok(Loaded { commit, index })
        });
        Some(got.as_ref().map_err(Clone::clone))
    }

    /// The reply for path `p` (`FILE_*` then bytes) into `buf`.
    fn reply(&mut self, p: &str, buf: &mut Vec<u8>) {
        buf.clear();
        if let Err(m) = crate::read::check_path(p) {
            buf.push(FILE_REFUSED);
            buf.extend_from_slice(format!("refused path {p:?}: {m}").as_bytes());
            return;
        }
        let (ses, rest) = p.split_once('/').expect("checked path");
        let s = SessionName::new(ses).expect("checked path");
        match self.serve(&s, rest, buf) {
            Ok(true) => {}
            Ok(false) => {
                buf.clear();
                buf.push(FILE_MISSING);
            }
            Err(m) => {
                buf.clear();
                buf.push(FILE_REFUSED);
                buf.extend_from_slice(format!("cannot read {p:?}: {m}").as_bytes());
            }
        }
    }

    fn serve(
        &mut self,
        s: &SessionName,
        rest: &str,
        buf: &mut Vec<u8>,
    ) -> std::result::Result<bool, String> {
        let (a, vol) = (self.a, self.vol);
        if self.session(s).is_none() {
            return Ok(false);
        }
        let l = self.open[s].as_ref().map_err(Clone::clone)?;
        buf.push(FILE_DATA);
        if rest == MANIFEST_FILE || rest == SESSION_INFO_FILE {
            let (what, obj) = match rest {
                MANIFEST_FILE => ("manifest", &l.commit.manifest),
                _ => ("info", &l.commit.info),
            };
            buf.extend_from_slice(&load(a, vol, &l.commit, what, obj).map_err(|e| e.message)?);
            return Ok(true);
        }
        let addr = parse_chunk_rel_path(rest).expect("checked path").0;
        let Some(i) = l.index.find(addr) else {
            return Ok(false);
        };
        let loc = l.index.locs[i];
        let hit = self.windows.get(s).is_some_and(|(p, start, data)| {
            *p == loc.pack
                && *start <= loc.offset
                && loc.offset + u64::from(loc.len) <= start + data.len() as u64
        });
        if !hit {
            let w = fetch(a, &l.index, i)?;
            self.windows.insert(s.clone(), w);
        }
        let (_, start, data) = &self.windows[s];
        let from = (loc.offset - start) as usize;
        buf.extend_from_slice(&data[from..from + loc.len as usize]);
        Ok(true)
    }
}

/// Chunk file `i` of `ix`, from the coalesced read in `win` or a new one.
pub(crate) fn chunk_bytes<'w>(
    a: &S3Archive,
    ix: &Index,
    i: usize,
    win: &'w mut Option<(u32, u64, Vec<u8>)>,
) -> std::result::Result<&'w [u8], String> {
    let l = ix.locs[i];
    let hit = win.as_ref().is_some_and(|(p, start, data)| {
        *p == l.pack
            && *start <= l.offset
            && l.offset + u64::from(l.len) <= start + data.len() as u64
    });
    if !hit {
        *win = Some(fetch(a, ix, i)?);
    }
    let (_, start, data) = win.as_ref().expect("filled above");
    let from = (l.offset - start) as usize;
    Ok(&data[from..from + l.len as usize])
}

/// One ranged read from chunk `i` on through its neighbours stored right
/// after it in the same pack, up to [`WINDOW`] bytes.
fn fetch(a: &S3Archive, ix: &Index, i: usize) -> std::result::Result<(u32, u64, Vec<u8>), String> {
    let first: Loc = ix.locs[i];
    let end = ix.run_end(i, WINDOW);
    let key = a.keys().pack(&ix.packs[first.pack as usize]);
    let data = a
        .client()
        .get_range(&key, first.offset, end - first.offset)
        .map_err(|e| a.err(e).message)?
        .ok_or_else(|| format!("pack {key} is missing"))?;
    if data.len() as u64 != end - first.offset {
        return Err(format!(
            "pack {key} is shorter than its index says ({} bytes from {})",
            data.len(),
            first.offset
        ));
    }
    Ok((first.pack, first.offset, data))
}

/// Longest path request accepted (as crate::read).
const MAX_PATH_FRAME: usize = 4096;

/// `ReadFiles`: one reply frame per path frame, until the empty one.
pub fn read_files(
    a: &S3Archive,
    vol: &VolName,
    r: &mut Input<'_>,
    w: &mut dyn Write,
) -> Result<()> {
    let mut rd = Reader {
        a,
        vol,
        committed: sessions(a, vol)?,
        open: HashMap::new(),
        windows: HashMap::new(),
        max_chunk: a.header()?.chunk_size.max_stored(),
    };
    let mut buf = Vec::new();
    loop {
        let frame = read_frame(r, MAX_PATH_FRAME)
            .map_err(|e| AgentError::io("reading path requests", e))?;
        let frame = match frame {
            None => return Err(AgentError::invalid("pipe closed inside a ReadFiles stream")),
            Some(f) if f.is_empty() => return Ok(()),
            Some(f) => f,
        };
        rd.reply(&String::from_utf8_lossy(&frame), &mut buf);
        write_frame(&mut &mut *w, &buf)
            .and_then(|_| {
                if crate::read::frame_buffered(r.buffer()) {
                    Ok(())
                } else {
                    w.flush()
                }
            })
            .map_err(|e| AgentError::io("writing file reply", e))?;
    }
}

/// The newest session's commit (its volume record is `volume.json`).
fn newest(a: &S3Archive, vol: &VolName) -> Result<Option<Commit>> {
    match sessions(a, vol)?.into_iter().next_back() {
        Some((s, g)) => read_commit(a, vol, &s, g).map(Some),
        None => Ok(None),
    }
}

/// `ReadMeta`: `volume.json`, or a committed session's info.json or manifest.
pub fn read_meta(a: &S3Archive, vol: &VolName, path: &str, offset: u64) -> Result<(u64, Vec<u8>)> {
    crate::read_meta::check_meta_path(path)
        .map_err(|m| AgentError::invalid(format!("refused path {m}")))?;
    let missing = || {
        AgentError::new(
            ErrorKind::NotFound,
            format!("{path} of volume {vol} is not in the archive"),
        )
    };
    let piece = crate::read_meta::piece_size() as u64;
    let whole = |b: Vec<u8>| -> Result<(u64, Vec<u8>)> {
        let size = b.len() as u64;
        if offset > size {
            return Err(AgentError::invalid(format!(
                "offset {offset} is past the end of {path} of volume {vol} ({size} bytes)"
            )));
        }
        let end = size.min(offset + piece);
        Ok((size, b[offset as usize..end as usize].to_vec()))
    };
    if path == VOLUME_FILE {
        return whole(newest(a, vol)?.ok_or_else(missing)?.volume.into_bytes());
    }
    let (ses, rest) = path.split_once('/').expect("checked path");
    let s = SessionName::new(ses).map_err(|e| AgentError::invalid(e.to_string()))?;
    let gen = *sessions(a, vol)?.get(&s).ok_or_else(missing)?;
    let c = read_commit(a, vol, &s, gen)?;
    let (what, obj) = if rest == MANIFEST_FILE {
        ("manifest", &c.manifest)
    } else {
        ("info", &c.info)
    };
    if offset > obj.size {
        return Err(AgentError::invalid(format!(
            "offset {offset} is past the end of {path} of volume {vol} ({} bytes)",
            obj.size
        )));
    }
    let key = a.keys().object(vol, &s, what, gen);
    let len = (obj.size - offset).min(piece);
    let b = a
        .client()
        .get_range(&key, offset, len)
        .map_err(|e| a.err(e))?
        .ok_or_else(missing)?;
    Ok((obj.size, b))
}

/// `SessionDigests`: each committed session's info.json sha256 (its object
/// read and checked against the commit), and volume.json's.
pub fn session_digests(
    a: &S3Archive,
    vol: &VolName,
    after: Option<&SessionName>,
) -> Result<Response> {
    let all = sessions(a, vol)?;
    let mut rest = all
        .iter()
        .filter(|(s, _)| after.is_none_or(|a| *s > a))
        .peekable();
    let mut out = Vec::new();
    while out.len() < DIGEST_PAGE {
        let Some((s, g)) = rest.next() else { break };
        let d = read_commit(a, vol, s, *g).and_then(|c| {
            if c.info.size > MAX_INFO_FILE {
                return Err(AgentError::invalid(format!(
                    "is larger than {MAX_INFO_FILE} bytes"
                )));
            }
            load(a, vol, &c, "info", &c.info).map(|_| c.info.sha256)
        });
        let (info_sha256, problem) = match d {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e.message.chars().take(200).collect())),
        };
        out.push(SessionDigest {
            name: s.clone(),
            info_sha256,
            problem,
        });
    }
    let volume_sha256 = match (after, all.iter().next_back()) {
        (None, Some((s, g))) => read_commit(a, vol, s, *g)
            .ok()
            .map(|c| super::layout::sha256_hex(c.volume.as_bytes())),
        _ => None,
    };
    Ok(Response::SessionDigests {
        sessions: out,
        volume_sha256,
        more: rest.peek().is_some(),
    })
}
