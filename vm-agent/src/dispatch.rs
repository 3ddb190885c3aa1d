//! The request loop: decode each request, decide once what it needs (an
//! open archive, the settled prune state of the one volume it concerns),
//! then hand it to one small function per request.
//!
//! Error policy, the same for every request: an error is answered; if a
//! data stream follows the request (`PutSession`, `ReadFiles`, `Dedup`) it
//! then ends the session, because the stream cannot be resynchronised
//! cheaply; otherwise the loop goes on. A request whose names are invalid is
//! refused before anything else is looked at, with the name's error.

use crate::backend::{Backend, Input};
use crate::error::{AgentError, Result};
use crate::open_archive::Archive;
use crate::prune_apply::Use;
use crate::{legacy, mount, store};
use sparsebak_common::names::VolName;
use sparsebak_common::proto::{
    recv_msg, send_msg, write_frame, ErrorKind, FrameReader, RawRequest, Request, Response,
    FEATURE_READ_META, FEATURE_RESUME, FEATURE_REWRAP_KEY, FEATURE_SESSION_DIGESTS,
    PROTOCOL_VERSION,
};
use std::io::{BufReader, BufWriter, Read, Write};

/// The open archive, whichever backend stores it.
type Slot = Option<Box<dyn Backend>>;

/// This agent's version, announced in `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// TEST HOOK, for the version-skew tests only: answer Hello as an agent of
/// before the optional requests did (no `features`), or, if its value is a
/// comma-separated list of features, as one without those. Read only in
/// builds with the `test-hooks` feature (crate::test_hooks).
pub const TEST_HOOK_NO_FEATURES: &str = "SPARSEBAK_AGENT_NO_FEATURES";

/// Serve requests until `Bye` or EOF. Errors in a data stream are answered
/// and then end the session (the stream cannot be resynchronised cheaply);
/// other errors are answered and the loop continues.
pub fn serve<R: Read, W: Write>(input: R, output: W) -> std::result::Result<(), String> {
    let input: Box<dyn Read + '_> = Box::new(input);
    let mut r: Input<'_> = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::with_capacity(1 << 20, output);
    let mut archive: Slot = None;
    let io_err = |e: std::io::Error| format!("pipe to sparsebak failed: {e}");
    loop {
        let raw: RawRequest = match recv_msg(&mut r).map_err(io_err)? {
            None => return Ok(()),
            Some(q) => q,
        };
        let mut trailer = None;
        let (resp, fatal) = match answer(&mut archive, raw, &mut r, &mut w, &mut trailer) {
            Ok(Some(resp)) => (resp, None),
            Ok(None) => return Ok(()),
            Err((e, fatal)) => (e.reply(), fatal.then_some(e)),
        };
        send_msg(&mut w, &resp).map_err(io_err)?;
        if let Some(data) = trailer {
            write_frame(&mut w, &data)
                .and_then(|_| w.flush())
                .map_err(io_err)?;
        }
        if let Some(e) = fatal {
            return Err(e.message);
        }
    }
}

/// The reply (`None` after `Bye`), or the error and whether it ends the session.
type Handled = std::result::Result<Option<Response>, (AgentError, bool)>;

/// Answer one request. A reply that carries a frame after its message
/// (`ReadMeta`) leaves that frame in `trailer`.
fn answer<W: Write>(
    archive: &mut Slot,
    raw: RawRequest,
    r: &mut Input<'_>,
    w: &mut W,
    trailer: &mut Option<Vec<u8>>,
) -> Handled {
    let soft = |e: AgentError| (e, false);
    if archive.as_ref().is_some_and(|a| a.is_legacy()) {
        legacy::allowed(&raw).map_err(soft)?;
    }
    let fatal = raw.has_stream();
    let req = Request::try_from(raw).map_err(|e| {
        let e = AgentError::invalid(e.problem.to_string());
        (e, fatal)
    })?;
    match req {
        Request::Hello { protocol } => hello(protocol).map(Some).map_err(|e| (e, true)),
        Request::Open {
            dest_path,
            mountpoint,
            write,
        } => open(archive, &dest_path, &mountpoint, write)
            .map(Some)
            .map_err(soft),
        Request::OpenLegacy {
            dest_path,
            mountpoint,
        } => open_legacy(archive, &dest_path, &mountpoint)
            .map(Some)
            .map_err(soft),
        Request::Bye => {
            send_msg(w, &Response::Ok).map_err(|e| (AgentError::io("pipe", e), true))?;
            Ok(None)
        }
        req => on_archive(archive, req, r, w, trailer)
            .map(Some)
            .map_err(|e| (e, fatal)),
    }
}

/// The volume a request reads or writes, and how its interrupted prune, if
/// any, is settled before the request is served; `None` for requests that
/// settle nothing here (`Prune` settles after checking its plan, `Dedup`
/// each volume it meets). `ReadFiles`' volume is held to this version's
/// name rules unless the archive is a 0.2 one, which has no prune state.
fn concern(a: &dyn Backend, req: &Request) -> Result<Option<(VolName, Use)>> {
    Ok(match req {
        Request::ListSessions { vol } | Request::SessionDigests { vol, .. } => {
            Some((vol.clone(), Use::List))
        }
        Request::PutSession { vol, .. }
        | Request::Commit { vol, .. }
        | Request::ReadMeta { vol, .. } => Some((vol.clone(), Use::Data)),
        Request::ReadFiles { vol } if !a.is_legacy() => {
            let vol =
                VolName::try_from(vol.clone()).map_err(|e| AgentError::invalid(e.to_string()))?;
            Some((vol, Use::Data))
        }
        _ => None,
    })
}

/// A request on the open archive: settle the volume it concerns, then serve it.
fn on_archive<W: Write>(
    slot: &mut Slot,
    req: Request,
    r: &mut Input<'_>,
    w: &mut W,
    trailer: &mut Option<Vec<u8>>,
) -> Result<Response> {
    let a = slot
        .as_mut()
        .ok_or_else(|| AgentError::invalid("no archive is open"))?;
    let settled = concern(a.as_ref(), &req)?;
    if let Some((vol, why)) = &settled {
        a.settle(vol, *why)?;
    }
    let a = a.as_mut();
    let ours = settled.map(|(vol, _)| vol);
    match req {
        Request::InitArchive { header } => a.init(&header).map(|_| Response::Ok),
        Request::RewrapKey { header } => a.rewrap_key(&header).map(|_| Response::Ok),
        Request::ListVolumes => {
            let (names, ignored) = a.list_volumes()?;
            Ok(Response::Volumes { names, ignored })
        }
        Request::ListSessions { vol } => list_sessions(a, &vol),
        Request::SessionDigests { vol, after } => a.session_digests(&vol, after.as_ref()),
        Request::PutSession {
            vol,
            session,
            expect_last,
            volume_uuid,
            format,
            resume_from,
        } => {
            let p = store::Put {
                vol: &vol,
                session: &session,
                expect_last: expect_last.as_ref(),
                volume_uuid: volume_uuid.as_deref(),
                format,
                resume_from: resume_from.as_ref(),
            };
            put_session(&*a, &p, r)
        }
        Request::ResumeCheck {
            vol,
            session,
            after,
        } => {
            let (count, more, data) = a.resume_check(&vol, &session, after)?;
            *trailer = Some(data);
            Ok(Response::ResumeHeld { count, more })
        }
        Request::Commit {
            vol,
            session,
            volume_info,
        } => a.commit(&vol, &session, &volume_info).map(|_| Response::Ok),
        Request::ReadFiles { vol } => a
            .read_files(ours.as_ref(), &vol, r, w)
            .map(|_| Response::Ok),
        Request::ReadMeta { vol, path, offset } => read_meta(&*a, &vol, &path, offset, trailer),
        Request::DeleteVolume { vol } => a.delete_volume(&vol).map(|_| Response::Ok),
        Request::PrunePart {
            vol,
            file,
            offset,
            data,
        } => a
            .prune_part(&vol, &file, offset, &data)
            .map(|_| Response::Ok),
        Request::Prune {
            vol,
            target,
            pruned,
        } => a.prune(&vol, &target, &pruned).map(|p| Response::Pruned {
            moved: p.moved,
            already_done: p.already_done,
        }),
        Request::DeleteArchive { uuid } => {
            a.delete_archive(&uuid)?;
            // The archive (and its lock file) is gone.
            *slot = None;
            Ok(Response::Ok)
        }
        Request::CheckHardlinks => a.check_hardlinks().map(|_| Response::Ok),
        Request::Dedup => dedup_stream(&*a, r),
        Request::Hello { .. }
        | Request::Open { .. }
        | Request::OpenLegacy { .. }
        | Request::Bye => {
            unreachable!("answered without an archive")
        }
    }
}

fn hello(protocol: u32) -> Result<Response> {
    if protocol != PROTOCOL_VERSION {
        return Err(AgentError::new(
            ErrorKind::Invalid,
            format!("protocol version {protocol} is not supported (agent {} speaks {PROTOCOL_VERSION}); install matching versions", VERSION),
        ));
    }
    Ok(Response::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: VERSION.into(),
        features: features(),
    })
}

/// The optional requests this agent serves (fewer under the test hook).
fn features() -> Vec<String> {
    let all = [
        FEATURE_READ_META,
        FEATURE_RESUME,
        FEATURE_SESSION_DIGESTS,
        FEATURE_REWRAP_KEY,
    ];
    // Constant false without the feature: the variable is never read.
    let hidden = if cfg!(feature = "test-hooks") {
        std::env::var(TEST_HOOK_NO_FEATURES).unwrap_or_default()
    } else {
        String::new()
    };
    all.iter()
        .filter(|f| !(hidden == "1" || hidden.split(',').any(|h| h == **f)))
        .map(|f| f.to_string())
        .collect()
}

fn open(archive: &mut Slot, dest_path: &str, mountpoint: &str, write: bool) -> Result<Response> {
    if let Some(store) = mountpoint.strip_prefix(crate::s3store::conf::STORE_PREFIX) {
        let a = crate::s3store::S3Archive::open(store, dest_path, write)?;
        let header = a.header_json();
        *archive = Some(Box::new(a));
        // A bucket has no free space to report.
        return Ok(Response::Opened {
            header,
            free_bytes: 0,
            total_bytes: 0,
        });
    }
    let (dest, free, total) = mount::check_open(dest_path, mountpoint)?;
    let a = Archive::open(&dest, write)?;
    let header = a.header_json();
    *archive = Some(Box::new(a));
    Ok(Response::Opened {
        header,
        free_bytes: free,
        total_bytes: total,
    })
}

fn open_legacy(archive: &mut Slot, dest_path: &str, mountpoint: &str) -> Result<Response> {
    if mountpoint.starts_with(crate::s3store::conf::STORE_PREFIX) {
        return Err(AgentError::invalid(
            "a sparsebak 0.2 archive cannot be in an object store (s3:)",
        ));
    }
    let (dest, free, total) = mount::check_open(dest_path, mountpoint)?;
    *archive = Some(Box::new(Archive::open_legacy(&dest)?));
    Ok(Response::Opened {
        header: None,
        free_bytes: free,
        total_bytes: total,
    })
}

fn list_sessions(a: &dyn Backend, vol: &VolName) -> Result<Response> {
    let (committed, in_progress) = a.list_sessions(vol)?;
    Ok(Response::Sessions {
        committed,
        in_progress,
    })
}

/// Receive the session's stream; on success read it to its end.
fn put_session(a: &dyn Backend, p: &store::Put<'_>, r: &mut Input<'_>) -> Result<Response> {
    let mut stream = FrameReader::new(r);
    let st = a.put_session(p, &mut stream)?;
    stream
        .drain()
        .map_err(|e| AgentError::io("reading the session stream", e))?;
    Ok(Response::Stored {
        files: st.files,
        bytes: st.bytes,
    })
}

/// The piece's bytes go in `trailer`, the frame after the reply.
fn read_meta(
    a: &dyn Backend,
    vol: &VolName,
    path: &str,
    offset: u64,
    trailer: &mut Option<Vec<u8>>,
) -> Result<Response> {
    let (size, data) = a.read_meta(vol, path, offset)?;
    let len = data.len() as u64;
    *trailer = Some(data);
    Ok(Response::MetaPiece { size, len })
}

fn dedup_stream(a: &dyn Backend, r: &mut Input<'_>) -> Result<Response> {
    let mut stream = FrameReader::new(r);
    let d = a.dedup(&mut stream)?;
    stream
        .drain()
        .map_err(|e| AgentError::io("reading the dedup stream", e))?;
    Ok(Response::Deduped {
        linked: d.linked,
        already: d.already,
        bytes_saved: d.bytes_saved,
        problem_count: d.problem_count,
        problems: d.problems,
    })
}
