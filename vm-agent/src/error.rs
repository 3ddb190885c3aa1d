//! Agent errors: each carries the protocol [`ErrorKind`] dom0 will see, and
//! the typed facts dom0 acts on (the damaged chunk file), which become the
//! fields of the error reply ([`AgentError::reply`]).

use sparsebak_common::linkref::ChunkLoc;
use sparsebak_common::proto::{ErrorKind, Response};
use std::fmt;
use std::io;

#[derive(Debug)]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
    /// The chunk file that failed its hash check, where dom0 can avoid it.
    pub damaged: Option<ChunkLoc>,
}

pub type Result<T> = std::result::Result<T, AgentError>;

impl AgentError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AgentError {
            kind,
            message: message.into(),
            damaged: None,
        }
    }
    /// A hash mismatch of chunk file `loc` says which file it was; any
    /// other error is left as it is.
    pub fn with_damaged(mut self, loc: &ChunkLoc) -> Self {
        if self.kind == ErrorKind::Mismatch {
            self.damaged = Some(loc.clone());
        }
        self
    }
    /// Say what was being done: "`what`: message"; kind and facts are kept.
    pub fn prefixed(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
    /// The error reply dom0 receives.
    pub fn reply(&self) -> Response {
        Response::Error {
            kind: self.kind,
            message: self.message.clone(),
            damaged: self.damaged.clone(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    /// Wrap an I/O error with what was being done; a full disk gets its own kind.
    pub fn io(what: impl fmt::Display, e: io::Error) -> Self {
        let kind = match e.raw_os_error() {
            Some(libc_enospc)
                if libc_enospc == nix::libc::ENOSPC || libc_enospc == nix::libc::EDQUOT =>
            {
                ErrorKind::NoSpace
            }
            _ if e.kind() == io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        let text = if kind == ErrorKind::NoSpace {
            format!("destination is full: {what}: {e}")
        } else {
            format!("{what}: {e}")
        };
        AgentError::new(kind, text)
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AgentError {}

/// Attach context to I/O results.
pub trait IoContext<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| AgentError::io(what, e))
    }
}
