//! What `sparsebak` (dom0) and `sparsebak-agent` (the archive side) must agree on.
//!
//! * [`names`]: validated volume and session names, and the chunk file layout.
//! * [`units`]: typed byte offsets, chunk indices and chunk sizes.
//! * [`header`]: the archive header stored at the archive root.
//! * [`proto`]: the framed request/response protocol spoken over a byte pipe.
//! * [`plan`]: the prune plan dom0 computes and the agent carries out.
//! * [`legacy`]: names in sparsebak 0.2 archives, which are read, never written.
//! * [`linkref`]: chunk locations and the records deduplication sends.
//! * [`tarmember`]: the tar member header all sparsebak tars use.
//!
//! The agent depends on this crate and nothing else of dom0, so everything here
//! is small, dependency-light and free of I/O policy.

pub mod header;
pub mod legacy;
pub mod linkref;
pub mod names;
pub mod plan;
pub mod proto;
pub mod tarmember;
pub mod units;

use serde::{Deserialize, Serialize};

/// Directory under the destination path that holds the archive.
pub const ARCHIVE_DIR: &str = "sparsebak";
/// Archive header file name, inside [`ARCHIVE_DIR`].
pub const HEADER_FILE: &str = "archive.json";
/// Lock file the agent holds while it writes, inside [`ARCHIVE_DIR`].
pub const LOCK_FILE: &str = ".lock";
/// Per-volume info file name, inside a volume directory.
pub const VOLUME_FILE: &str = "volume.json";
/// Per-session info file name, inside a session directory.
pub const SESSION_INFO_FILE: &str = "info.json";
/// Per-session manifest file name, inside a session directory.
pub const MANIFEST_FILE: &str = "manifest";
/// `info.json` `format` of a session stored one file per chunk.
pub const FORMAT_FOLDERS: &str = SessionFormat::Folders.as_str();
/// `info.json` `format` of a session stored as one tar file (FORMAT.md §13).
pub const FORMAT_TAR: &str = SessionFormat::Tar.as_str();

/// How a session's chunks are stored: its `info.json` `format` and the
/// `format` of `PutSession`, spelled [`FORMAT_FOLDERS`] or [`FORMAT_TAR`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionFormat {
    /// One file per chunk.
    #[default]
    Folders,
    /// One tar file (FORMAT.md §13).
    Tar,
}

impl SessionFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionFormat::Folders => "folders",
            SessionFormat::Tar => "tar",
        }
    }
    /// The format spelled `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        [SessionFormat::Folders, SessionFormat::Tar]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

impl std::fmt::Display for SessionFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
