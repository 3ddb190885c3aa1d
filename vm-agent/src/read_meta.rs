//! Serving a volume's metadata files for disaster recovery (`ReadMeta`,
//! docs/FORMAT.md §15): `volume.json`, and `S_…/info.json` and
//! `S_…/manifest` of a committed session, in pieces of at most
//! [`META_PIECE`] bytes by offset, so a manifest of any size crosses the
//! pipe without a frame over the protocol's limit.
//!
//! The path checks are those of `ReadFiles` (crate::read): only names the
//! layout could have produced, opened one component at a time with
//! `O_NOFOLLOW`, regular files only. A session name is exactly
//! `S_YYYYMMDD-HHMMSS`, so `-tmp`, `-orphan` and `-pruned` dirs are never
//! served.

use crate::dirfd::open_regular;
use crate::error::{AgentError, IoContext, Result};
use crate::open_archive::{Archive, VOLUMES_DIR};
use crate::read::{is_session_meta, session_rest};
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{ErrorKind, META_PIECE};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE, VOLUME_FILE};
use std::os::unix::fs::FileExt;

/// [`META_PIECE`], or less for the recovery tests
/// (crate::test_hooks::META_PIECE).
pub(crate) fn piece_size() -> usize {
    crate::test_hooks::meta_piece().map_or(META_PIECE, |n| n.clamp(1, META_PIECE))
}

/// Check a requested metadata path; `Err` is the refusal message.
pub fn check_meta_path(p: &str) -> std::result::Result<(), String> {
    if p == VOLUME_FILE {
        return Ok(());
    }
    let rest = session_rest(p, || {
        format!("{p:?} is not volume.json or S_…/{{info.json,manifest}}")
    })?;
    if is_session_meta(rest) {
        return Ok(());
    }
    Err(format!(
        "{p:?} is not a session's {MANIFEST_FILE} or {SESSION_INFO_FILE}"
    ))
}

/// `ReadMeta`: the file's size and its bytes from `offset` (at most one
/// piece; none at the end of the file).
pub fn read_meta(a: &Archive, vol: &VolName, path: &str, offset: u64) -> Result<(u64, Vec<u8>)> {
    a.header()?;
    check_meta_path(path).map_err(|m| AgentError::invalid(format!("refused path {m}")))?;
    let rel = format!("{VOLUMES_DIR}/{vol}/{path}");
    let f = match open_regular(&a.dir, &rel) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(AgentError::new(
                ErrorKind::NotFound,
                format!("{path} of volume {vol} is not in the archive"),
            ))
        }
        Err(e) => {
            return Err(AgentError::invalid(format!(
                "cannot read {path} of volume {vol}: {e}"
            )))
        }
    };
    let size = f
        .metadata()
        .ctx(format_args!("cannot stat {path} of volume {vol}"))?
        .len();
    if offset > size {
        return Err(AgentError::invalid(format!(
            "offset {offset} is past the end of {path} of volume {vol} ({size} bytes)"
        )));
    }
    let want = (size - offset).min(piece_size() as u64) as usize;
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        let n = f
            .read_at(&mut buf[got..], offset + got as u64)
            .ctx(format_args!("cannot read {path} of volume {vol}"))?;
        if n == 0 {
            break; // shrank while we read: serve what is there
        }
        got += n;
    }
    buf.truncate(got);
    Ok((size, buf))
}

#[cfg(test)]
mod tests {
    use super::check_meta_path;

    #[test]
    fn only_layout_names_pass() {
        for ok in [
            "volume.json",
            "S_20260101-000000/manifest",
            "S_20260101-000000/info.json",
        ] {
            assert!(check_meta_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "archive.json",
            "../volume.json",
            "S_20260101-000000-tmp/manifest",
            "S_20260101-000000-orphan/info.json",
            "S_20260101-000000-pruned/manifest",
            ".prune-plan/manifest",
            "S_20260101-000000/000000000/x0000000000000000",
            "S_20260101-000000/manifest/x",
            "S_20260101-000000//manifest",
            "S_20260101-000000/../manifest",
            "/S_20260101-000000/manifest",
            "S_2026010-000000/manifest",
        ] {
            assert!(check_meta_path(bad).is_err(), "{bad}");
        }
    }
}
