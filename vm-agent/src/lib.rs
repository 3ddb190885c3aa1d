//! The archive side of sparsebak: one request loop over a byte pipe.
//!
//! The agent trusts dom0 for *what* to store but still checks every name and
//! path against the layout, because a bug or a hand-edited config on the dom0
//! side must never write outside the archive. It runs no shell commands.

pub mod dedup;
pub mod delete;
pub mod dirfd;
pub mod error;
pub mod fsutil;
pub mod legacy;
pub mod mount;
pub mod open_archive;
pub mod parse;
pub mod pipe;
pub mod prune_apply;
pub mod read;
pub mod read_meta;
pub mod readahead;
pub mod store;
pub mod tarsession;
pub mod test_hooks;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API): the
/// private checks of paths dom0 asks for.
#[doc(hidden)]
pub mod fuzzing {
    /// `ReadFiles` path check ([`crate::read`]); `Err` is the refusal.
    pub fn check_read_path(p: &str) -> Result<(), String> {
        crate::read::check_path(p)
    }
}

use error::{AgentError, Result};
use open_archive::Archive;
use sparsebak_common::proto::{
    recv_msg, send_msg, write_frame, ErrorKind, FrameReader, Request, Response, FEATURE_READ_META,
    PROTOCOL_VERSION,
};
use std::io::{BufReader, BufWriter, Read, Write};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// TEST HOOK, for the version-skew tests only: answer Hello as an agent of
/// before the optional requests did (no `features`). Read only in builds
/// with the `test-hooks` feature (crate::test_hooks).
pub const TEST_HOOK_NO_FEATURES: &str = "SPARSEBAK_AGENT_NO_FEATURES";

fn err_response(e: &AgentError) -> Response {
    Response::Error {
        kind: e.kind,
        message: e.message.clone(),
    }
}

/// Serve requests until `Bye` or EOF. Errors in a data stream are answered
/// and then end the session (the stream cannot be resynchronised cheaply);
/// other errors are answered and the loop continues.
pub fn serve<R: Read, W: Write>(input: R, output: W) -> std::result::Result<(), String> {
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut w = BufWriter::with_capacity(1 << 20, output);
    let mut archive: Option<Archive> = None;
    let io_err = |e: std::io::Error| format!("pipe to sparsebak failed: {e}");
    loop {
        let req: Request = match recv_msg(&mut r).map_err(io_err)? {
            None => return Ok(()),
            Some(q) => q,
        };
        let mut trailer = None;
        let (resp, fatal) = match handle(&mut archive, req, &mut r, &mut w, &mut trailer) {
            Ok(Some(resp)) => (resp, None),
            Ok(None) => return Ok(()),
            Err((e, fatal)) => (err_response(&e), fatal.then_some(e)),
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

type Handled = std::result::Result<Option<Response>, (AgentError, bool)>;

/// Answer one request. A reply that carries a frame after its message
/// (`ReadMeta`) leaves that frame in `trailer`.
fn handle<R: Read, W: Write>(
    archive: &mut Option<Archive>,
    req: Request,
    r: &mut BufReader<R>,
    w: &mut W,
    trailer: &mut Option<Vec<u8>>,
) -> Handled {
    let soft = |e: AgentError| (e, false);
    let need = |a: &Option<Archive>| -> Result<()> {
        a.as_ref()
            .map(|_| ())
            .ok_or_else(|| AgentError::invalid("no archive is open"))
    };
    if archive.as_ref().is_some_and(|a| a.legacy) {
        legacy::allowed(&req).map_err(soft)?;
    }
    match req {
        Request::Hello { protocol } => {
            if protocol != PROTOCOL_VERSION {
                let e = AgentError::new(
                    ErrorKind::Invalid,
                    format!("protocol version {protocol} is not supported (agent {VERSION} speaks {PROTOCOL_VERSION}); install matching versions"),
                );
                return Err((e, true));
            }
            Ok(Some(Response::Hello {
                protocol: PROTOCOL_VERSION,
                agent_version: VERSION.into(),
                features: if cfg!(feature = "test-hooks")
                    && std::env::var_os(TEST_HOOK_NO_FEATURES).is_some()
                {
                    vec![]
                } else {
                    vec![FEATURE_READ_META.into()]
                },
            }))
        }
        Request::Open {
            dest_path,
            mountpoint,
            write,
        } => {
            let (dest, free, total) = mount::check_open(&dest_path, &mountpoint).map_err(soft)?;
            let a = Archive::open(&dest, write).map_err(soft)?;
            let header = a
                .header
                .as_ref()
                .map(|h| serde_json::to_string(h).expect("header serialises"));
            *archive = Some(a);
            Ok(Some(Response::Opened {
                header,
                free_bytes: free,
                total_bytes: total,
            }))
        }
        Request::OpenLegacy {
            dest_path,
            mountpoint,
        } => {
            let (dest, free, total) = mount::check_open(&dest_path, &mountpoint).map_err(soft)?;
            *archive = Some(Archive::open_legacy(&dest).map_err(soft)?);
            Ok(Some(Response::Opened {
                header: None,
                free_bytes: free,
                total_bytes: total,
            }))
        }
        Request::InitArchive { header } => {
            need(archive).map_err(soft)?;
            archive.as_mut().unwrap().init(&header).map_err(soft)?;
            Ok(Some(Response::Ok))
        }
        Request::ListVolumes => {
            need(archive).map_err(soft)?;
            let (names, ignored) = archive.as_ref().unwrap().list_volumes().map_err(soft)?;
            Ok(Some(Response::Volumes { names, ignored }))
        }
        Request::ListSessions { vol } => {
            need(archive).map_err(soft)?;
            prune_apply::settle(archive.as_ref().unwrap(), &vol, prune_apply::Use::List)
                .map_err(soft)?;
            let vol = parse::parse_vol(&vol).map_err(soft)?;
            let (c, t) = archive
                .as_ref()
                .unwrap()
                .list_sessions(&vol)
                .map_err(soft)?;
            Ok(Some(Response::Sessions {
                committed: c.into_iter().map(String::from).collect(),
                in_progress: t,
            }))
        }
        Request::PutSession {
            vol,
            session,
            expect_last,
            volume_uuid,
            format,
        } => {
            let mut stream = FrameReader::new(r);
            let res = need(archive).and_then(|_| {
                prune_apply::settle(archive.as_ref().unwrap(), &vol, prune_apply::Use::Data)?;
                store::put_session(
                    archive.as_ref().unwrap(),
                    &vol,
                    &session,
                    expect_last.as_deref(),
                    volume_uuid.as_deref(),
                    format.as_deref(),
                    &mut stream,
                )
            });
            match res {
                Ok(s) => {
                    stream
                        .drain()
                        .map_err(|e| (AgentError::io("reading the session stream", e), true))?;
                    Ok(Some(Response::Stored {
                        files: s.files,
                        bytes: s.bytes,
                    }))
                }
                Err(e) => Err((e, true)),
            }
        }
        Request::Commit {
            vol,
            session,
            volume_info,
        } => {
            need(archive).map_err(soft)?;
            prune_apply::settle(archive.as_ref().unwrap(), &vol, prune_apply::Use::Data)
                .map_err(soft)?;
            store::commit(archive.as_ref().unwrap(), &vol, &session, &volume_info).map_err(soft)?;
            Ok(Some(Response::Ok))
        }
        Request::ReadFiles { vol } if archive.as_ref().is_some_and(|a| a.legacy) => {
            legacy::read_files(archive.as_ref().unwrap(), &vol, r, w).map_err(|e| (e, true))?;
            Ok(Some(Response::Ok))
        }
        Request::ReadFiles { vol } => {
            need(archive).map_err(|e| (e, true))?;
            prune_apply::settle(archive.as_ref().unwrap(), &vol, prune_apply::Use::Data)
                .map_err(|e| (e, true))?;
            read::read_files(archive.as_ref().unwrap(), &vol, r, w).map_err(|e| (e, true))?;
            Ok(Some(Response::Ok))
        }
        Request::ReadMeta { vol, path, offset } => {
            need(archive).map_err(soft)?;
            // An interrupted prune is completed first (we hold the lock) or
            // refused: its half-moved state is never served.
            prune_apply::settle(archive.as_ref().unwrap(), &vol, prune_apply::Use::Data)
                .map_err(soft)?;
            let (size, data) = read_meta::read_meta(archive.as_ref().unwrap(), &vol, &path, offset)
                .map_err(soft)?;
            let len = data.len() as u64;
            *trailer = Some(data);
            Ok(Some(Response::MetaPiece { size, len }))
        }
        Request::DeleteVolume { vol } => {
            need(archive).map_err(soft)?;
            let vol = parse::parse_vol(&vol).map_err(soft)?;
            archive
                .as_ref()
                .unwrap()
                .delete_volume(&vol)
                .map_err(soft)?;
            Ok(Some(Response::Ok))
        }
        Request::PrunePart {
            vol,
            file,
            offset,
            data,
        } => {
            need(archive).map_err(soft)?;
            prune_apply::put_part(archive.as_ref().unwrap(), &vol, &file, offset, &data)
                .map_err(soft)?;
            Ok(Some(Response::Ok))
        }
        Request::Prune {
            vol,
            target,
            pruned,
        } => {
            need(archive).map_err(soft)?;
            let p = prune_apply::prune(archive.as_ref().unwrap(), &vol, &target, &pruned)
                .map_err(soft)?;
            Ok(Some(Response::Pruned {
                moved: p.moved,
                already_done: p.already_done,
            }))
        }
        Request::DeleteArchive { uuid } => {
            need(archive).map_err(soft)?;
            delete::delete_archive(archive.as_ref().unwrap(), &uuid).map_err(soft)?;
            // The archive (and its lock file) is gone.
            *archive = None;
            Ok(Some(Response::Ok))
        }
        Request::CheckHardlinks => {
            need(archive).map_err(soft)?;
            dedup::check_hardlinks(archive.as_ref().unwrap()).map_err(soft)?;
            Ok(Some(Response::Ok))
        }
        Request::Dedup => {
            let mut stream = FrameReader::new(r);
            let res = need(archive)
                .and_then(|_| dedup::ops::dedup(archive.as_ref().unwrap(), &mut stream));
            let d = res.map_err(|e| (e, true))?;
            stream
                .drain()
                .map_err(|e| (AgentError::io("reading the dedup stream", e), true))?;
            Ok(Some(Response::Deduped {
                linked: d.linked,
                already: d.already,
                bytes_saved: d.bytes_saved,
                problem_count: d.problem_count,
                problems: d.problems,
            }))
        }
        Request::Bye => {
            send_msg(w, &Response::Ok).map_err(|e| (AgentError::io("pipe", e), true))?;
            Ok(None)
        }
    }
}
