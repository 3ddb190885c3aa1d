//! Replies the agent sends, typed: the volume and session names a reply
//! lists are validated as it is decoded, naming the field that failed, so
//! dom0 never parses them again; an error reply says in typed fields what
//! dom0 acts on (the damaged chunk file), never only in its message.

use crate::linkref::ChunkLoc;
use crate::names::{SessionName, VolName};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The mountpoint is not mounted, or the path is not on it.
    NotMounted,
    /// The destination file system is full.
    NoSpace,
    /// Another process holds the archive lock.
    Locked,
    /// No archive, volume or session by that name.
    NotFound,
    /// The archive already exists.
    Exists,
    /// The request broke a layout or protocol rule.
    Invalid,
    /// The archive does not match what dom0 expects (e.g. rolled back).
    Mismatch,
    /// Any other I/O failure.
    Io,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Hello {
        protocol: u32,
        agent_version: String,
        /// Optional requests this agent serves (e.g. [`super::FEATURE_READ_META`]);
        /// absent from agents older than the first such request.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    Opened {
        header: Option<String>,
        free_bytes: u64,
        total_bytes: u64,
    },
    Volumes {
        #[serde(deserialize_with = "vol_names")]
        names: Vec<VolName>,
        /// Entries of `volumes/` that are not valid volume names (or not
        /// directories), at most [`MAX_PROBLEMS`], each cut to 200
        /// characters; never used, reported by `arch-recover`. Absent from
        /// older agents.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ignored: Vec<String>,
    },
    Sessions {
        #[serde(deserialize_with = "session_names")]
        committed: Vec<SessionName>,
        in_progress: Vec<String>,
    },
    /// Answer to `SessionDigests`: committed sessions in name order, each
    /// with the sha256 of its `info.json` or why there is none; `more` if
    /// sessions follow the last one listed (ask again `after` it).
    /// `volume_sha256` is that of `volume.json` (absent if it is missing).
    SessionDigests {
        sessions: Vec<SessionDigest>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        volume_sha256: Option<String>,
        more: bool,
    },
    Stored {
        files: u64,
        bytes: u64,
    },
    /// `ResumeCheck`: `count` records follow in one frame; `more` if the
    /// unfinished session holds chunk files after the last of them.
    ResumeHeld {
        count: u64,
        more: bool,
    },
    /// A prune is complete: `moved` chunk files were renamed into the
    /// target; `already_done` if an earlier, interrupted run had finished it.
    Pruned {
        moved: u64,
        already_done: bool,
    },
    Error {
        kind: ErrorKind,
        message: String,
        /// The chunk file whose bytes failed their hash check, where dom0
        /// can step around it: the link target of a `send --dedup` member
        /// (docs/FORMAT.md §12.6). Absent otherwise, and from older agents.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        damaged: Option<ChunkLoc>,
    },
    /// Answer to `ReadMeta`: the file is `size` bytes; the next frame holds
    /// its `len` bytes from the requested offset (`len` is 0 at the end).
    MetaPiece {
        size: u64,
        len: u64,
    },
    /// `Dedup` is done: `linked` duplicates were replaced (`bytes_saved`
    /// freed), `already` were the same file already, `problems` (at most
    /// [`MAX_PROBLEMS`] of `problem_count`) explain operations skipped
    /// because a file was damaged or missing.
    Deduped {
        linked: u64,
        already: u64,
        bytes_saved: u64,
        problem_count: u64,
        problems: Vec<String>,
    },
}

/// One committed session as `SessionDigests` lists it: the sha256 (64
/// lowercase hex digits) of its `info.json`, or, when that file cannot be
/// read as a regular file of at most [`super::MAX_INFO_FILE`] bytes, why
/// (at most 200 characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDigest {
    pub name: SessionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Most problem messages a [`Response::Deduped`] carries.
pub const MAX_PROBLEMS: usize = 100;

/// A list of names from the other side, each through its validating
/// constructor; the error names the field.
fn names<'de, D, T>(d: D, field: &str) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String>,
    T::Error: std::fmt::Display,
{
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| T::try_from(s).map_err(|e| serde::de::Error::custom(format!("{field}: {e}"))))
        .collect()
}

fn vol_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<VolName>, D::Error> {
    names(d, "names")
}

fn session_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SessionName>, D::Error> {
    names(d, "committed")
}
