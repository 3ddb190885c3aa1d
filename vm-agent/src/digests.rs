//! `SessionDigests`: the sha256 of each committed session's `info.json`
//! (and of `volume.json`), so dom0 can confirm cheaply, in one request per
//! [`DIGEST_PAGE`] sessions, that the destination holds every session its
//! metadata names, unchanged (docs/FORMAT.md §17). Files are opened like
//! `ReadMeta`'s ([`open_regular`]: no symlink at any component, regular
//! files only) and bounded by [`MAX_INFO_FILE`]; a file that fails is
//! listed with the reason instead of a digest, never skipped.

use crate::dirfd::open_regular;
use crate::error::Result;
use crate::open_archive::{Archive, VOLUMES_DIR};
use sha2::{Digest, Sha256};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{Response, SessionDigest, DIGEST_PAGE, MAX_INFO_FILE};
use sparsebak_common::{SESSION_INFO_FILE, VOLUME_FILE};
use std::io::Read;

/// The answer to `SessionDigests { vol, after }`.
pub fn session_digests(
    a: &Archive,
    vol: &VolName,
    after: Option<&SessionName>,
) -> Result<Response> {
    let (committed, _) = a.list_sessions(vol)?;
    let mut rest = committed
        .into_iter()
        .filter(|s| after.is_none_or(|a| s > a))
        .peekable();
    let mut sessions = Vec::new();
    while sessions.len() < DIGEST_PAGE {
        let Some(name) = rest.next() else { break };
        let rel = format!("{VOLUMES_DIR}/{vol}/{name}/{SESSION_INFO_FILE}");
        let (info_sha256, problem) = match digest(a, &rel) {
            Ok(d) => (Some(d), None),
            Err(why) => (None, Some(why)),
        };
        sessions.push(SessionDigest {
            name,
            info_sha256,
            problem,
        });
    }
    let volume_sha256 = match after {
        None => digest(a, &format!("{VOLUMES_DIR}/{vol}/{VOLUME_FILE}")).ok(),
        Some(_) => None,
    };
    Ok(Response::SessionDigests {
        sessions,
        volume_sha256,
        more: rest.peek().is_some(),
    })
}

/// The sha256 of the small metadata file `rel`, or why it cannot be read.
fn digest(a: &Archive, rel: &str) -> std::result::Result<String, String> {
    let f = match open_regular(&a.dir, rel) {
        Ok(Some(f)) => f,
        Ok(None) => return Err("missing".into()),
        Err(e) => return Err(cut(format!("cannot be read: {e}"))),
    };
    let mut buf = Vec::new();
    let read = f.take(MAX_INFO_FILE + 1).read_to_end(&mut buf);
    if let Err(e) = read {
        return Err(cut(format!("cannot be read: {e}")));
    }
    if buf.len() as u64 > MAX_INFO_FILE {
        return Err(format!("is larger than {MAX_INFO_FILE} bytes"));
    }
    Ok(hex(&Sha256::digest(&buf)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cut(s: String) -> String {
    s.chars().take(200).collect()
}
