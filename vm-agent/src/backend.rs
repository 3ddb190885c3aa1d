//! The seam between the request loop and where an archive lives.
//!
//! [`crate::dispatch`] decodes a request and calls one method of
//! [`Backend`] for it; it never touches storage itself. Today there is one
//! implementation, the directory on a mounted file system
//! ([`crate::open_archive::Archive`], `crate::fs_backend`), whose write order
//! and checks are docs/FORMAT.md's. An object store (issue 16) cannot share
//! that layout's primitives (it has no rename and no hard link, and a
//! conditional create instead of `flock`), so the seam is at the level of the
//! archive operations a request asks for, not of single file operations: each
//! backend keeps its own crash-safe order behind the same requests.
//!
//! A backend keeps the contract dom0 relies on whatever it stores on:
//! names come typed (checked on decode); a session without its commit does
//! not exist; an error names the volume, session or path it concerns.

use crate::dedup::ops::Deduped;
use crate::error::Result;
use crate::prune_apply::{Pruned, Use};
use crate::store::{Put, StoreStats};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::Response;
use std::io::{BufReader, Read, Write};

/// The request stream as every backend reads it (type-erased once, in
/// [`crate::dispatch::serve`], so backends can be trait objects).
pub type Input<'a> = BufReader<Box<dyn Read + 'a>>;

/// What an open archive does for the request loop, one method per request.
pub trait Backend {
    /// The archive header as stored (JSON), `None` if there is no archive yet.
    fn header_json(&self) -> Option<String>;
    /// A sparsebak 0.2 archive opened read-only (only a file-system backend).
    fn is_legacy(&self) -> bool;
    /// Settle `vol`'s interrupted prune, if any, before a request uses it.
    fn settle(&self, vol: &VolName, why: Use) -> Result<()>;
    /// `InitArchive`: create the archive with this header.
    fn init(&mut self, header_json: &str) -> Result<()>;
    /// `RewrapKey`: replace the header by one that differs only in its
    /// wrapped key and MAC (format 2).
    fn rewrap_key(&mut self, header_json: &str) -> Result<()>;
    /// `ListVolumes`: volumes, and entries that are not volumes (reports only).
    fn list_volumes(&self) -> Result<(Vec<VolName>, Vec<String>)>;
    /// `ListSessions`: committed sessions and unfinished (`-tmp`) ones.
    fn list_sessions(&self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)>;
    /// `SessionDigests`: one page of committed sessions with the sha256 of
    /// each one's info.json, after `after` (the consistency check).
    fn session_digests(&self, vol: &VolName, after: Option<&SessionName>) -> Result<Response>;
    /// `PutSession`: store the session's tar stream (not yet committed).
    fn put_session(&self, p: &Put<'_>, stream: &mut dyn Read) -> Result<StoreStats>;
    /// `ResumeCheck`: one bounded piece of what an unfinished session holds.
    fn resume_check(
        &self,
        vol: &VolName,
        session: &SessionName,
        after: Option<u64>,
    ) -> Result<(u64, bool, Vec<u8>)>;
    /// `Commit`: make a stored session exist, last of its writes.
    fn commit(&self, vol: &VolName, session: &SessionName, volume_info: &str) -> Result<()>;
    /// `ReadFiles`: answer path frames until the empty one. `ours` is the
    /// volume narrowed to this version's rules, `None` in a 0.2 archive.
    fn read_files(
        &self,
        ours: Option<&VolName>,
        vol: &LegacyVolName,
        r: &mut Input<'_>,
        w: &mut dyn Write,
    ) -> Result<()>;
    /// `ReadMeta`: (whole size, bytes from `offset`) of a metadata file.
    fn read_meta(&self, vol: &VolName, path: &str, offset: u64) -> Result<(u64, Vec<u8>)>;
    /// `DeleteVolume`.
    fn delete_volume(&self, vol: &VolName) -> Result<()>;
    /// `PrunePart`: one part of a prune plan's upload.
    fn prune_part(&self, vol: &VolName, file: &str, offset: u64, data: &str) -> Result<()>;
    /// `Prune`: check the uploaded plan, commit it, carry it out.
    fn prune(&self, vol: &VolName, target: &SessionName, pruned: &[SessionName]) -> Result<Pruned>;
    /// `DeleteArchive`: the whole archive, if its header has `uuid`.
    fn delete_archive(&self, uuid: &str) -> Result<()>;
    /// `CheckHardlinks`: can this store share a chunk between sessions?
    fn check_hardlinks(&self) -> Result<()>;
    /// `Dedup`: share the chunks the stream names.
    fn dedup(&self, stream: &mut dyn Read) -> Result<Deduped>;
}
