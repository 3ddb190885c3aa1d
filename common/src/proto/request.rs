//! Requests dom0 sends, typed: every volume and session name in a
//! [`Request`] is a validated [`VolName`]/[`SessionName`], and the session
//! format a [`SessionFormat`], so the agent never parses a name again.
//!
//! On the wire a request is the JSON of its [`RawRequest`] twin, which holds
//! the same fields as plain strings: the bytes are those of every earlier
//! version for every valid value. Decoding goes through
//! `Request::try_from(RawRequest)`, which runs the validating constructors
//! and names the field that failed ([`RequestError`]). The agent decodes in
//! these two steps itself, so a request with an invalid name is answered with
//! the name's error rather than taken for a broken pipe.

use crate::legacy::LegacyVolName;
use crate::names::{NameError, SessionName, VolName};
use crate::SessionFormat;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRequest", into = "RawRequest")]
pub enum Request {
    Hello {
        protocol: u32,
    },
    /// Open the archive under `dest_path`, which must lie on the file system
    /// mounted at `mountpoint`. `write` takes the archive lock.
    Open {
        dest_path: String,
        mountpoint: String,
        write: bool,
    },
    /// Open the sparsebak 0.2 archive (`<dest_path>/sparsebak/default/`)
    /// read-only: no lock, nothing created. Answered by `Opened` without a
    /// header; afterwards only `ReadFiles` (0.2 chunk paths) and `Bye` are
    /// accepted. See docs/FORMAT.md §13.
    OpenLegacy {
        dest_path: String,
        mountpoint: String,
    },
    /// Create the archive with this header (JSON text). Fails if one exists.
    InitArchive {
        header: String,
    },
    /// Format 2: replace the header with this one, which differs only in
    /// its wrapped key and MAC (a new passphrase; docs/FORMAT.md §18.3).
    /// Advertised as [`super::FEATURE_REWRAP_KEY`].
    RewrapKey {
        header: String,
    },
    ListVolumes,
    ListSessions {
        vol: VolName,
    },
    /// The sha256 of each committed session's `info.json` of `vol`, for
    /// the sessions after `after` in name order, at most
    /// [`super::DIGEST_PAGE`] per answer, and of `volume.json`: dom0's cheap
    /// check that the destination holds what its metadata says
    /// (docs/FORMAT.md §17). Answered by [`super::Response::SessionDigests`];
    /// advertised as [`super::FEATURE_SESSION_DIGESTS`].
    SessionDigests {
        vol: VolName,
        after: Option<SessionName>,
    },
    /// Start a session; a data stream with a tar archive follows. Members are
    /// chunk files `<9hex>/x<16hex>`, then `manifest`, then `info.json`.
    /// `expect_last` is dom0's newest committed session for the volume;
    /// `volume_uuid` is dom0's identity of the volume, which lets the agent
    /// recognise sessions it committed for this volume that dom0 never did.
    /// `format` is how the agent stores the session (docs/FORMAT.md §13); on
    /// the wire it is absent for [`SessionFormat::Folders`], so an agent of
    /// before tar sessions still accepts a folders session.
    /// `resume_from` names an unfinished session of the volume whose
    /// `-tmp` directory becomes this session's, so the stream may keep
    /// chunk files already there (docs/FORMAT.md §19); absent on the wire
    /// when `None`, and only sent to agents advertising
    /// [`super::FEATURE_RESUME`].
    PutSession {
        vol: VolName,
        session: SessionName,
        expect_last: Option<SessionName>,
        volume_uuid: Option<String>,
        format: SessionFormat,
        resume_from: Option<SessionName>,
    },
    /// What the unfinished session `session` of `vol` holds: its chunk
    /// files after address `after`, in ascending order, each hashed by the
    /// agent. Answered by [`super::Response::ResumeHeld`] followed by one
    /// frame of `count` records of [`super::RESUME_RECORD`] bytes, or by a
    /// `NotFound` refusal when there is no such unfinished session.
    /// Advertised as [`super::FEATURE_RESUME`] (docs/FORMAT.md §19).
    ResumeCheck {
        vol: VolName,
        session: SessionName,
        after: Option<u64>,
    },
    /// Make the session durable and visible, then write `volume.json`.
    Commit {
        vol: VolName,
        session: SessionName,
        volume_info: String,
    },
    /// A stream of path frames follows (`S_…/<9hex>/x<16hex>`, relative to the
    /// volume dir); each is answered by one reply frame, in order. `vol` is
    /// checked by the 0.2 rules here (the looser ones, [`LegacyVolName`]):
    /// the agent holds it to [`VolName`]'s unless the open archive is a 0.2
    /// one, which only it knows.
    ReadFiles {
        vol: LegacyVolName,
    },
    /// Read part of a committed session's `info.json` or `manifest`
    /// (`path` = `S_…/info.json`, `S_…/manifest`) or of the volume's
    /// `volume.json`, from byte `offset`: disaster recovery of dom0's
    /// metadata (docs/FORMAT.md §15). Answered by [`super::Response::MetaPiece`]
    /// followed by one frame of exactly `len` bytes (at most
    /// [`super::META_PIECE`]), or by an error. Advertised as
    /// [`super::FEATURE_READ_META`].
    ReadMeta {
        vol: VolName,
        path: String,
        offset: u64,
    },
    /// Remove a volume's data from the archive.
    DeleteVolume {
        vol: VolName,
    },
    /// Upload part of a prune plan into `<vol>/.prune-plan-tmp/<file>`, where
    /// `file` is `plan`, `manifest` or `info.json` (see [`crate::plan`]).
    /// `offset` must equal the bytes of that file received so far; `plan` at
    /// offset 0 starts a new upload, discarding any earlier one.
    PrunePart {
        vol: VolName,
        file: String,
        offset: u64,
        data: String,
    },
    /// Carry out the uploaded plan: merge `pruned` (oldest first) into
    /// `target`. The agent first records the plan durably as
    /// `<vol>/.prune-plan/`, so an interrupted prune is completed by the next
    /// request on the volume. Answered by [`super::Response::Pruned`].
    Prune {
        vol: VolName,
        target: SessionName,
        pruned: Vec<SessionName>,
    },
    /// Remove the whole archive directory. `uuid` must be the archive's.
    DeleteArchive {
        uuid: String,
    },
    /// Check that the destination supports hard links (needed by
    /// deduplication): link `archive.json` to a temporary name and remove it.
    CheckHardlinks,
    /// Replace duplicate chunk files by hard links. A data stream follows,
    /// one [`crate::linkref::DedupOp`] line per operation; answered by
    /// [`super::Response::Deduped`] (docs/FORMAT.md §12).
    Dedup,
    Bye,
}

/// The wire form of a [`Request`]: the same JSON, every name a plain string.
/// Only decoding and tests that must send what dom0 never would use it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RawRequest {
    Hello {
        protocol: u32,
    },
    Open {
        dest_path: String,
        mountpoint: String,
        write: bool,
    },
    OpenLegacy {
        dest_path: String,
        mountpoint: String,
    },
    InitArchive {
        header: String,
    },
    RewrapKey {
        header: String,
    },
    ListVolumes,
    ListSessions {
        vol: String,
    },
    SessionDigests {
        vol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    PutSession {
        vol: String,
        session: String,
        expect_last: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_uuid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_from: Option<String>,
    },
    ResumeCheck {
        vol: String,
        session: String,
        after: Option<u64>,
    },
    Commit {
        vol: String,
        session: String,
        volume_info: String,
    },
    ReadFiles {
        vol: String,
    },
    ReadMeta {
        vol: String,
        path: String,
        offset: u64,
    },
    DeleteVolume {
        vol: String,
    },
    PrunePart {
        vol: String,
        file: String,
        offset: u64,
        data: String,
    },
    Prune {
        vol: String,
        target: String,
        pruned: Vec<String>,
    },
    DeleteArchive {
        uuid: String,
    },
    CheckHardlinks,
    Dedup,
    Bye,
}

impl RawRequest {
    /// Does a data stream follow this request on the pipe (valid or not)?
    pub fn has_stream(&self) -> bool {
        matches!(
            self,
            RawRequest::PutSession { .. } | RawRequest::ReadFiles { .. } | RawRequest::Dedup
        )
    }
}

/// What is wrong with one field of a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldProblem {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("session format {0:?} is not known (folders, tar)")]
    Format(String),
}

/// A request that is well-formed JSON but carries an invalid value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("field {field} of {op}: {problem}")]
pub struct RequestError {
    /// The request's `op`.
    pub op: &'static str,
    /// The field that failed.
    pub field: &'static str,
    pub problem: FieldProblem,
}

/// Validates the fields of one request, naming each that fails.
struct Check(&'static str);

impl Check {
    fn fail(&self, field: &'static str, problem: impl Into<FieldProblem>) -> RequestError {
        RequestError {
            op: self.0,
            field,
            problem: problem.into(),
        }
    }
    fn vol(&self, field: &'static str, s: String) -> Result<VolName, RequestError> {
        VolName::try_from(s).map_err(|e| self.fail(field, e))
    }
    fn ses(&self, field: &'static str, s: String) -> Result<SessionName, RequestError> {
        SessionName::try_from(s).map_err(|e| self.fail(field, e))
    }
}

fn format_of(c: &Check, f: Option<String>) -> Result<SessionFormat, RequestError> {
    match f {
        None => Ok(SessionFormat::Folders),
        Some(f) => {
            SessionFormat::parse(&f).ok_or_else(|| c.fail("format", FieldProblem::Format(f)))
        }
    }
}

fn put_session(
    vol: String,
    session: String,
    expect_last: Option<String>,
    volume_uuid: Option<String>,
    format: Option<String>,
    resume_from: Option<String>,
) -> Result<Request, RequestError> {
    let c = Check("put_session");
    // In the order the agent checked them before requests were typed.
    let format = format_of(&c, format)?;
    Ok(Request::PutSession {
        vol: c.vol("vol", vol)?,
        session: c.ses("session", session)?,
        expect_last: expect_last.map(|s| c.ses("expect_last", s)).transpose()?,
        volume_uuid,
        format,
        resume_from: resume_from.map(|s| c.ses("resume_from", s)).transpose()?,
    })
}

fn prune(vol: String, target: String, pruned: Vec<String>) -> Result<Request, RequestError> {
    let c = Check("prune");
    Ok(Request::Prune {
        vol: c.vol("vol", vol)?,
        target: c.ses("target", target)?,
        pruned: pruned
            .into_iter()
            .map(|s| c.ses("pruned", s))
            .collect::<Result<_, _>>()?,
    })
}

impl TryFrom<RawRequest> for Request {
    type Error = RequestError;
    fn try_from(r: RawRequest) -> Result<Request, RequestError> {
        use RawRequest as R;
        Ok(match r {
            R::Hello { protocol } => Request::Hello { protocol },
            R::Open {
                dest_path,
                mountpoint,
                write,
            } => Request::Open {
                dest_path,
                mountpoint,
                write,
            },
            R::OpenLegacy {
                dest_path,
                mountpoint,
            } => Request::OpenLegacy {
                dest_path,
                mountpoint,
            },
            R::InitArchive { header } => Request::InitArchive { header },
            R::RewrapKey { header } => Request::RewrapKey { header },
            R::ListVolumes => Request::ListVolumes,
            R::ListSessions { vol } => Request::ListSessions {
                vol: Check("list_sessions").vol("vol", vol)?,
            },
            R::SessionDigests { vol, after } => {
                let c = Check("session_digests");
                Request::SessionDigests {
                    vol: c.vol("vol", vol)?,
                    after: after.map(|s| c.ses("after", s)).transpose()?,
                }
            }
            R::PutSession {
                vol,
                session,
                expect_last,
                volume_uuid,
                format,
                resume_from,
            } => put_session(vol, session, expect_last, volume_uuid, format, resume_from)?,
            R::ResumeCheck {
                vol,
                session,
                after,
            } => {
                let c = Check("resume_check");
                Request::ResumeCheck {
                    vol: c.vol("vol", vol)?,
                    session: c.ses("session", session)?,
                    after,
                }
            }
            R::Commit {
                vol,
                session,
                volume_info,
            } => {
                let c = Check("commit");
                Request::Commit {
                    vol: c.vol("vol", vol)?,
                    session: c.ses("session", session)?,
                    volume_info,
                }
            }
            R::ReadFiles { vol } => Request::ReadFiles {
                vol: LegacyVolName::new(&vol).map_err(|e| Check("read_files").fail("vol", e))?,
            },
            R::ReadMeta { vol, path, offset } => Request::ReadMeta {
                vol: Check("read_meta").vol("vol", vol)?,
                path,
                offset,
            },
            R::DeleteVolume { vol } => Request::DeleteVolume {
                vol: Check("delete_volume").vol("vol", vol)?,
            },
            R::PrunePart {
                vol,
                file,
                offset,
                data,
            } => Request::PrunePart {
                vol: Check("prune_part").vol("vol", vol)?,
                file,
                offset,
                data,
            },
            R::Prune {
                vol,
                target,
                pruned,
            } => prune(vol, target, pruned)?,
            R::DeleteArchive { uuid } => Request::DeleteArchive { uuid },
            R::CheckHardlinks => Request::CheckHardlinks,
            R::Dedup => Request::Dedup,
            R::Bye => Request::Bye,
        })
    }
}

impl From<Request> for RawRequest {
    fn from(r: Request) -> RawRequest {
        use Request as Q;
        match r {
            Q::Hello { protocol } => RawRequest::Hello { protocol },
            Q::Open {
                dest_path,
                mountpoint,
                write,
            } => RawRequest::Open {
                dest_path,
                mountpoint,
                write,
            },
            Q::OpenLegacy {
                dest_path,
                mountpoint,
            } => RawRequest::OpenLegacy {
                dest_path,
                mountpoint,
            },
            Q::InitArchive { header } => RawRequest::InitArchive { header },
            Q::RewrapKey { header } => RawRequest::RewrapKey { header },
            Q::ListVolumes => RawRequest::ListVolumes,
            Q::ListSessions { vol } => RawRequest::ListSessions { vol: vol.into() },
            Q::SessionDigests { vol, after } => RawRequest::SessionDigests {
                vol: vol.into(),
                after: after.map(Into::into),
            },
            Q::PutSession {
                vol,
                session,
                expect_last,
                volume_uuid,
                format,
                resume_from,
            } => RawRequest::PutSession {
                vol: vol.into(),
                session: session.into(),
                expect_last: expect_last.map(Into::into),
                volume_uuid,
                format: (format != SessionFormat::Folders).then(|| format.as_str().into()),
                resume_from: resume_from.map(Into::into),
            },
            Q::ResumeCheck {
                vol,
                session,
                after,
            } => RawRequest::ResumeCheck {
                vol: vol.into(),
                session: session.into(),
                after,
            },
            Q::Commit {
                vol,
                session,
                volume_info,
            } => RawRequest::Commit {
                vol: vol.into(),
                session: session.into(),
                volume_info,
            },
            Q::ReadFiles { vol } => RawRequest::ReadFiles { vol: vol.into() },
            Q::ReadMeta { vol, path, offset } => RawRequest::ReadMeta {
                vol: vol.into(),
                path,
                offset,
            },
            Q::DeleteVolume { vol } => RawRequest::DeleteVolume { vol: vol.into() },
            Q::PrunePart {
                vol,
                file,
                offset,
                data,
            } => RawRequest::PrunePart {
                vol: vol.into(),
                file,
                offset,
                data,
            },
            Q::Prune {
                vol,
                target,
                pruned,
            } => RawRequest::Prune {
                vol: vol.into(),
                target: target.into(),
                pruned: pruned.into_iter().map(Into::into).collect(),
            },
            Q::DeleteArchive { uuid } => RawRequest::DeleteArchive { uuid },
            Q::CheckHardlinks => RawRequest::CheckHardlinks,
            Q::Dedup => RawRequest::Dedup,
            Q::Bye => RawRequest::Bye,
        }
    }
}
