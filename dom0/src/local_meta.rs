//! Local metadata under the meta dir (default /var/lib/sparsebak). It is the
//! authority for what the archive holds: manifests here are what every chunk
//! coming back from a destination is checked against.
//!
//! ```text
//! <meta>/archive.json                      configuration
//! <meta>/lock                              single-instance lock
//! <meta>/state.json                        the archive's newest state (consistency::state)
//! <meta>/volumes/<vol>/volume.json         VolumeState
//! <meta>/volumes/<vol>/state.json          the volume's newest state (consistency::state)
//! <meta>/volumes/<vol>/S_…/info.json       SessionInfo
//! <meta>/volumes/<vol>/S_…/manifest        see manifest.rs
//! <meta>/volumes/<vol>/S_…-tmp/            a send in progress
//! ```

use crate::fsutil::{read_bounded, write_atomic};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::{Bytes, ChunkSize};
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE, VOLUME_FILE};
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MAX_META_FILE: u64 = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Meta {
    pub root: PathBuf,
}

/// Per-volume state: the head of the session chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    pub name: VolName,
    pub uuid: String,
    pub last: Option<SessionName>,
}

/// One session's description, stored beside its manifest (locally and on
/// the destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub name: SessionName,
    pub sequence: u64,
    pub previous: Option<SessionName>,
    /// Volume size at this session: restore produces exactly this many bytes.
    pub volsize: Bytes,
    pub chunk_size: ChunkSize,
    pub created_utc: String,
    /// "folders": one file per chunk.
    pub format: String,
    /// Manifest lines (chunks recorded in this session).
    pub chunks: u64,
    /// Chunk files stored (non-zero chunks).
    pub stored_chunks: u64,
    pub stored_bytes: u64,
    pub manifest_sha256: String,
}

impl Meta {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Meta { root: root.into() }
    }
    pub fn vol_dir(&self, vol: &VolName) -> PathBuf {
        self.root.join("volumes").join(vol.as_str())
    }
    pub fn session_dir(&self, vol: &VolName, s: &SessionName) -> PathBuf {
        self.vol_dir(vol).join(s.as_str())
    }
    pub fn manifest_path(&self, vol: &VolName, s: &SessionName) -> PathBuf {
        self.session_dir(vol, s).join(MANIFEST_FILE)
    }

    /// Take the single-instance lock; held until the returned guard drops.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        self.lock_wait(Duration::ZERO)
    }

    /// Take the single-instance lock, waiting up to `wait` for another
    /// sparsebak (a timer's `monitor`, say) to finish.
    pub fn lock_wait(&self, wait: Duration) -> Result<nix::fcntl::Flock<File>> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create meta dir {}", self.root.display()))?;
        let p = self.root.join("lock");
        let deadline = Instant::now() + wait;
        let mut said = false;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .with_context(|| format!("cannot open lock file {}", p.display()))?;
        loop {
            match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => return Ok(l),
                Err((back, _)) if Instant::now() < deadline => {
                    if !said {
                        log::info!(
                            "another sparsebak holds {}; waiting up to {}s",
                            p.display(),
                            wait.as_secs()
                        );
                        said = true;
                    }
                    f = back;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(_) => {
                    let hint = if wait.is_zero() {
                        " (--wait=SECONDS waits for it)"
                    } else {
                        ""
                    };
                    bail!(
                        "sparsebak is already running (lock {} is held){hint}",
                        p.display()
                    )
                }
            }
        }
    }

    pub fn load_volume(&self, vol: &VolName) -> Result<Option<VolumeState>> {
        let p = self.vol_dir(vol).join(VOLUME_FILE);
        if !p.exists() {
            return Ok(None);
        }
        let v: VolumeState = serde_json::from_slice(&read_bounded(&p, MAX_META_FILE)?)
            .with_context(|| format!("volume state {} is invalid", p.display()))?;
        if &v.name != vol {
            bail!(
                "volume state {} names volume {}, not {vol}",
                p.display(),
                v.name
            );
        }
        Ok(Some(v))
    }

    pub fn save_volume(&self, v: &VolumeState) -> Result<()> {
        let d = self.vol_dir(&v.name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        write_atomic(&d.join(VOLUME_FILE), &serde_json::to_vec_pretty(v)?)
    }

    pub fn load_session(&self, vol: &VolName, s: &SessionName) -> Result<SessionInfo> {
        let p = self.session_dir(vol, s).join(SESSION_INFO_FILE);
        let info: SessionInfo = serde_json::from_slice(&read_bounded(&p, MAX_META_FILE)?)
            .with_context(|| format!("session info {} is invalid", p.display()))?;
        if &info.name != s {
            bail!(
                "session info {} names session {}, not {s}",
                p.display(),
                info.name
            );
        }
        Ok(info)
    }

    /// The session chain of a volume, oldest first, following `previous`
    /// links back from the newest. A broken chain is an error, never a
    /// silently shorter history.
    pub fn chain(&self, vol: &VolName) -> Result<Vec<SessionInfo>> {
        let Some(state) = self.load_volume(vol)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut next = state.last;
        while let Some(s) = next {
            let info = self
                .load_session(vol, &s)
                .with_context(|| format!("session chain of volume {vol} is broken at {s}"))?;
            if let Some(p) = &info.previous {
                if p >= &info.name {
                    bail!(
                        "session chain of volume {vol} is not in time order at {}",
                        info.name
                    );
                }
            }
            next = info.previous.clone();
            out.push(info);
            if out.len() > 10_000_000 {
                bail!("session chain of volume {vol} loops");
            }
        }
        out.reverse();
        Ok(out)
    }
}
