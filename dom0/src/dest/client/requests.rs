//! The agent's requests that are one question and one answer (a
//! metadata piece follows its answer as one bounded frame).

use super::{AgentConn, Answer};
use anyhow::{bail, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{
    Request, Response, SessionDigest, FEATURE_READ_META, FEATURE_SESSION_DIGESTS, META_PIECE,
    PROTOCOL_VERSION,
};

/// A volume as the destination presents it (`SessionDigests`).
#[derive(Debug, Default)]
pub struct DestSessions {
    /// Committed sessions, strictly ascending.
    pub sessions: Vec<SessionDigest>,
    /// The sha256 of `volume.json`; `None` if it is missing or unreadable.
    pub volume_sha256: Option<String>,
}

/// Most sessions of one volume dom0 accepts from a listing (as arch-recover).
const MAX_SESSIONS: usize = 100_000;

/// One `ReadMeta` answer: the file's size and the bytes from the offset asked.
#[derive(Debug)]
pub struct MetaPiece {
    pub size: u64,
    pub data: Vec<u8>,
}

/// What the destination answered to `Open`.
#[derive(Debug, Clone)]
pub struct Opened {
    pub header: Option<String>,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl AgentConn {
    /// `DeleteVolume`; a refusal is the caller's to judge (`NotFound`: the
    /// archive has no such volume).
    pub fn delete_volume(&mut self, vol: &VolName) -> Result<Answer<()>> {
        let req = Request::DeleteVolume { vol: vol.clone() };
        Ok(match self.call(&req)? {
            Ok(Response::Ok) => Ok(()),
            Ok(r) => bail!("unexpected answer from the agent at {}: {r:?}", self.what),
            Err(refused) => Err(refused),
        })
    }

    pub(crate) fn hello(&mut self) -> Result<()> {
        match self.request(&Request::Hello {
            protocol: PROTOCOL_VERSION,
        })? {
            Response::Hello {
                protocol,
                agent_version,
                features,
            } if protocol == PROTOCOL_VERSION => {
                self.connected = true;
                self.agent_version = agent_version.chars().take(64).collect();
                self.features = features.into_iter().take(64).collect();
                Ok(())
            }
            r => bail!("the agent at {} answered Hello with {r:?}", self.what),
        }
    }

    pub fn open(&mut self, dest_path: &str, mountpoint: &str, write: bool) -> Result<Opened> {
        let req = Request::Open {
            dest_path: dest_path.into(),
            mountpoint: mountpoint.into(),
            write,
        };
        match self.request(&req)? {
            Response::Opened {
                header,
                free_bytes,
                total_bytes,
            } => Ok(Opened {
                header,
                free_bytes,
                total_bytes,
            }),
            r => bail!("unexpected answer to Open: {r:?}"),
        }
    }

    pub fn list_sessions(&mut self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)> {
        match self.request(&Request::ListSessions { vol: vol.clone() })? {
            Response::Sessions {
                committed,
                in_progress,
            } => Ok((committed, in_progress)),
            r => bail!("unexpected answer to ListSessions: {r:?}"),
        }
    }

    /// An agent that does not serve `ReadMeta` is older than arch-recover.
    /// Whether the agent announced optional request `f` in its Hello.
    pub fn has_feature(&self, f: &str) -> bool {
        self.features.iter().any(|x| x == f)
    }

    pub fn require_read_meta(&self) -> Result<()> {
        self.require(
            FEATURE_READ_META,
            "it cannot serve archive metadata for arch-recover",
        )
    }

    /// An agent that does not announce `feature` in its Hello is too old
    /// for what needs it (`why`).
    fn require(&self, feature: &str, why: &str) -> Result<()> {
        if self.features.iter().any(|f| f == feature) {
            return Ok(());
        }
        let version = if self.agent_version.is_empty() {
            "of unknown version"
        } else {
            &self.agent_version
        };
        bail!(
            "the agent at {} (sparsebak-agent {version}) is too old: {why}; \
             install sparsebak-agent {} there (matching versions, docs/FORMAT.md §13.6)",
            self.what,
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Every committed session of `vol` on the destination, in name order,
    /// with the sha256 of its `info.json` (or why there is none), and the
    /// sha256 of `volume.json`. Pages of the agent's answer must follow
    /// each other in strictly ascending order (docs/FORMAT.md §17).
    pub fn session_digests(&mut self, vol: &VolName) -> Result<DestSessions> {
        self.require(
            FEATURE_SESSION_DIGESTS,
            "it cannot list session digests for the consistency check",
        )?;
        let mut out = DestSessions::default();
        loop {
            let after = out.sessions.last().map(|d| d.name.clone());
            let req = Request::SessionDigests {
                vol: vol.clone(),
                after: after.clone(),
            };
            let (page, volume_sha256, more) = match self.request(&req)? {
                Response::SessionDigests {
                    sessions,
                    volume_sha256,
                    more,
                } => (sessions, volume_sha256, more),
                r => bail!("unexpected answer to SessionDigests: {r:?}"),
            };
            if after.is_none() {
                out.volume_sha256 = volume_sha256;
            }
            let before = out.sessions.len();
            for d in page {
                if out.sessions.last().is_some_and(|l| l.name >= d.name) {
                    bail!(
                        "the agent at {} listed the sessions of volume {vol} out of order (at {})",
                        self.what,
                        d.name
                    );
                }
                out.sessions.push(d);
            }
            if !more {
                return Ok(out);
            }
            if out.sessions.len() == before || out.sessions.len() > MAX_SESSIONS {
                bail!(
                    "the agent at {} listed too many sessions of volume {vol} (or an empty page)",
                    self.what
                );
            }
        }
    }

    /// Part of a metadata file of `vol` (`volume.json`, `S_…/info.json`,
    /// `S_…/manifest`) from `offset`: at most [`META_PIECE`] bytes, checked
    /// against what was asked before they are handed over. A refusal
    /// (`NotFound`: no such file) is the caller's to judge.
    pub fn read_meta(
        &mut self,
        vol: &VolName,
        path: &str,
        offset: u64,
    ) -> Result<Answer<MetaPiece>> {
        self.require_read_meta()?;
        let req = Request::ReadMeta {
            vol: vol.clone(),
            path: path.into(),
            offset,
        };
        let (size, len) = match self.call(&req)? {
            Ok(Response::MetaPiece { size, len }) => (size, len),
            Ok(r) => bail!("unexpected answer to ReadMeta: {r:?}"),
            Err(refused) => return Ok(Err(refused)),
        };
        let fits = offset.checked_add(len).is_some_and(|end| end <= size);
        if len > META_PIECE as u64 || !fits {
            // The frame that follows cannot be trusted to be skipped: drop the link.
            self.kill();
            bail!(
                "the agent at {} sent an invalid piece of {path} of volume {vol}: {len} bytes at offset \
                 {offset} of a {size}-byte file (at most {META_PIECE} per piece)",
                self.what
            );
        }
        let frame = self.piece_frame(META_PIECE, || format!("{path} of volume {vol}"))?;
        if frame.len() as u64 != len {
            self.kill();
            bail!(
                "the agent at {} announced {len} bytes of {path} of volume {vol} but sent {}",
                self.what,
                frame.len()
            );
        }
        Ok(Ok(MetaPiece { size, data: frame }))
    }
}
