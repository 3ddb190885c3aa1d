//! `sparsebak.Restore`: restores the backup VM asks dom0 for, through qrexec
//! (`qrexec-client-vm dom0 sparsebak.Restore+ARG` in the VM).
//!
//! The dom0 service file (`qubes-rpc/sparsebak.Restore`) runs as dom0's GUI
//! user and gains root through exactly one sudoers rule, for exactly
//! `sparsebak restore-service` with no arguments; the caller and the
//! request reach it in `QREXEC_REMOTE_DOMAIN` and `QREXEC_SERVICE_ARGUMENT`
//! (kept by that rule), and are handled here. Policy (`policy/`) denies the
//! service by default; the documented rule asks a person in dom0 to confirm
//! each call.
//!
//! Everything the VM sends is hostile. In order, each refusal ending the
//! request:
//! 1. the caller is a valid VM name, not dom0; the request follows the
//!    grammar of [`request`] (bounded);
//! 2. no other sparsebak runs (the meta dir's lock, not waited for);
//! 3. the archive's destination is `qubes://CALLER/...` or
//!    `qubes-ssh://CALLER|...`: a VM may only restore from the archive it
//!    serves itself;
//! 4. the qube is one the archive holds; it is not dom0 and not the backup
//!    VM; the target (the qube, or the new name) is not running; a new name
//!    must not be an existing qube.
//!
//! Then the restore runs through [`RestoreBackend`] (the real one calls
//! `restore-qube`'s library function, which checks its plan whole before
//! changing anything). The answer goes back on stdout with an exit code
//! ([`Reply`]); every request and its outcome is logged to syslog.

pub mod backend;
pub mod request;

use crate::jobs::log::JobLog;
use anyhow::Result;
use request::Request;
use sparsebak_common::names::SessionName;

/// Exit codes of `restore-service` (qrexec reserves 125-127).
pub const EXIT_DONE: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_REFUSED: u8 = 5;

/// A qube the archive holds, for `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub qube: String,
    /// Its settings sessions, oldest first.
    pub sessions: Vec<SessionName>,
}

/// What the service needs from dom0, so the checks can be tested with a fake.
pub trait RestoreBackend {
    /// The VM of the archive's `qubes://` or `qubes-ssh://` destination.
    fn archive_vm(&self) -> Option<String>;
    /// The qubes the archive holds.
    fn holdings(&mut self) -> Result<Vec<Holding>>;
    fn exists(&mut self, qube: &str) -> Result<bool>;
    fn running(&mut self, qube: &str) -> Result<bool>;
    /// Restore `qube` (as of `session`, under `as_name`); a one-line account.
    fn restore_qube(
        &mut self,
        qube: &str,
        session: Option<&SessionName>,
        as_name: Option<&str>,
    ) -> Result<String>;
}

/// The answer sent back to the VM.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub exit: u8,
    pub text: String,
}

fn refused(text: String) -> Reply {
    Reply {
        exit: EXIT_REFUSED,
        text: format!("refused: {text}"),
    }
}

/// Handle one request. `open` gives the backend (it takes the meta dir's
/// lock, so it fails while another sparsebak runs).
pub fn serve<'a>(
    caller: Option<&str>,
    arg: Option<&str>,
    open: impl FnOnce() -> Result<Box<dyn RestoreBackend + 'a>>,
    log: &dyn JobLog,
) -> Reply {
    let shown: String = arg.unwrap_or("").chars().take(request::MAX_ARG).collect();
    let who = caller.unwrap_or("?").chars().take(40).collect::<String>();
    log.info(&format!("restore request from VM {who:?}: {shown:?}"));
    let reply = decide(caller, arg, open);
    let line = format!(
        "restore request from VM {who:?}: {shown:?}: {}",
        reply.text.lines().next().unwrap_or("")
    );
    if reply.exit == EXIT_DONE {
        log.info(&line);
    } else {
        log.error(&line);
    }
    reply
}

fn decide<'a>(
    caller: Option<&str>,
    arg: Option<&str>,
    open: impl FnOnce() -> Result<Box<dyn RestoreBackend + 'a>>,
) -> Reply {
    let caller = match request::caller(caller) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let req = match request::parse(arg.unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let mut b = match open() {
        Ok(b) => b,
        Err(e) => return refused(format!("{e:#}")),
    };
    match b.archive_vm() {
        Some(vm) if vm == caller => {}
        Some(vm) => {
            return refused(format!(
                "VM {caller} does not serve this archive (its destination is VM {vm})"
            ))
        }
        None => return refused("this archive's destination is not a Qubes VM".into()),
    }
    match act(b.as_mut(), &caller, req) {
        Ok(r) => r,
        Err(e) => Reply {
            exit: EXIT_FAILED,
            text: format!("failed: {e:#}"),
        },
    }
}

fn act(b: &mut dyn RestoreBackend, caller: &str, req: Request) -> Result<Reply> {
    let holdings = b.holdings()?;
    let (name, session, as_name) = match req {
        Request::List => {
            let mut text = String::from(
                "ok: qubes this VM may ask to restore (sessions in UTC, newest last):\n",
            );
            for h in holdings.iter().filter(|h| h.qube != caller) {
                let recent: Vec<&str> = h
                    .sessions
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .map(|s| s.timestamp())
                    .collect();
                text.push_str(&format!("{} {}\n", h.qube, recent.join(" ")));
            }
            return Ok(Reply {
                exit: EXIT_DONE,
                text,
            });
        }
        Request::Qube {
            name,
            session,
            as_name,
        } => (name, session, as_name),
    };
    if name == caller || as_name.as_deref() == Some(caller) {
        return Ok(refused(format!(
            "VM {caller} cannot restore itself from its own archive"
        )));
    }
    let Some(h) = holdings.iter().find(|h| h.qube == name) else {
        return Ok(refused(format!("the archive holds no qube {name}")));
    };
    if let Some(s) = &session {
        if !h.sessions.iter().any(|x| x <= s) {
            return Ok(refused(format!(
                "the archive holds no session of {name} at or before {}",
                s.timestamp()
            )));
        }
    }
    let target = as_name.as_deref().unwrap_or(&name);
    if as_name.is_some() && b.exists(target)? {
        return Ok(refused(format!(
            "qube {target} exists: a qube is restored under a new name only if no qube has it"
        )));
    }
    if b.exists(target)? && b.running(target)? {
        return Ok(refused(format!(
            "qube {target} is running: shut it down first"
        )));
    }
    let done = b.restore_qube(&name, session.as_ref(), as_name.as_deref())?;
    Ok(Reply {
        exit: EXIT_DONE,
        text: format!("ok: {done}\n"),
    })
}

#[cfg(test)]
mod tests;
