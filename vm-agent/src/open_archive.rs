//! An open archive: where it is, whether we hold its lock, and the small
//! operations that don't stream data (init, listing, volume deletion).
//!
//! Layout under the destination path (see docs/FORMAT.md):
//! `sparsebak/{archive.json,.lock,volumes/<vol>/{volume.json,S_*/…}}`.

use crate::dirfd::open_path_file;
use crate::error::{AgentError, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use nix::fcntl::{Flock, FlockArg};
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::legacy::LEGACY_SET_DIR;
use sparsebak_common::names::{SessionName, VolName, TMP_SUFFIX};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::{ARCHIVE_DIR, HEADER_FILE, LOCK_FILE};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// Directory under the archive dir that holds one directory per volume.
pub const VOLUMES_DIR: &str = "volumes";
/// Largest header file accepted.
const MAX_HEADER: u64 = 64 * 1024;

pub struct Archive {
    /// `<dest>/sparsebak`
    pub dir: PathBuf,
    pub header: Option<ArchiveHeader>,
    lock: Option<Flock<File>>,
    pub writable: bool,
    /// A sparsebak 0.2 archive opened read-only (see crate::legacy).
    pub legacy: bool,
}

impl Archive {
    pub fn open(dest: &Path, write: bool) -> Result<Self> {
        let dir = dest.join(ARCHIVE_DIR);
        let header = read_header(&dir)?;
        let mut a = Archive {
            dir,
            header,
            lock: None,
            writable: write,
            legacy: false,
        };
        if write && a.header.is_some() {
            a.take_lock()?;
        }
        Ok(a)
    }

    /// A sparsebak 0.2 archive under `dest`, read-only: no header, no lock,
    /// nothing created; its set dir is checked first ([`check_legacy_set_dir`]).
    pub fn open_legacy(dest: &Path) -> Result<Self> {
        let dir = dest.join(ARCHIVE_DIR);
        check_legacy_set_dir(&dir)?;
        Ok(Archive {
            dir,
            header: None,
            lock: None,
            writable: false,
            legacy: true,
        })
    }

    fn take_lock(&mut self) -> Result<()> {
        let path = self.dir.join(LOCK_FILE);
        let f = open_path_file(
            OpenOptions::new().create(true).truncate(false).write(true),
            &path,
        )
        .ctx(format_args!("cannot open lock file {}", path.display()))?;
        let lock = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
            AgentError::new(
                ErrorKind::Locked,
                format!(
                    "archive {} is locked by another sparsebak process ({e})",
                    self.dir.display()
                ),
            )
        })?;
        self.lock = Some(lock);
        Ok(())
    }

    /// The header, or a NotFound error naming the archive path.
    pub fn header(&self) -> Result<&ArchiveHeader> {
        self.header.as_ref().ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!("no sparsebak archive at {}", self.dir.display()),
            )
        })
    }

    pub fn require_write(&self) -> Result<()> {
        self.header()?;
        if self.lock.is_none() {
            return Err(AgentError::invalid("archive was opened read-only"));
        }
        Ok(())
    }

    pub fn init(&mut self, header_json: &str) -> Result<()> {
        if !self.writable {
            return Err(AgentError::invalid("archive was opened read-only"));
        }
        if self.header.is_some() || self.dir.join(HEADER_FILE).exists() {
            return Err(AgentError::new(
                ErrorKind::Exists,
                format!("an archive already exists at {}", self.dir.display()),
            ));
        }
        let header = ArchiveHeader::parse(header_json.as_bytes()).map_err(AgentError::invalid)?;
        fs::create_dir_all(self.dir.join(VOLUMES_DIR))
            .ctx(format_args!("cannot create {}", self.dir.display()))?;
        self.take_lock()?;
        write_atomic(&self.dir.join(HEADER_FILE), header_json.as_bytes())?;
        fsync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent() {
            fsync_dir(parent)?;
        }
        self.header = Some(header);
        Ok(())
    }

    /// `RewrapKey`: replace the header by one that differs only in its
    /// wrapped key and MAC (the agent cannot check the MAC; dom0 does).
    pub fn rewrap_key(&mut self, header_json: &str) -> Result<()> {
        self.require_write()?;
        let new = self
            .header()?
            .rewrapped(header_json.as_bytes())
            .map_err(AgentError::invalid)?;
        write_atomic(&self.dir.join(HEADER_FILE), header_json.as_bytes())?;
        fsync_dir(&self.dir)?;
        self.header = Some(new);
        Ok(())
    }

    pub fn vol_dir(&self, vol: &VolName) -> PathBuf {
        self.dir.join(VOLUMES_DIR).join(vol.as_str())
    }

    /// Volume dirs, and the entries of `volumes/` that are not volume dirs
    /// (bounded, for reports only).
    pub fn list_volumes(&self) -> Result<(Vec<VolName>, Vec<String>)> {
        self.header()?;
        let (mut names, mut ignored) = (Vec::new(), Vec::new());
        let d = self.dir.join(VOLUMES_DIR);
        for e in fs::read_dir(&d).ctx(format_args!("cannot list {}", d.display()))? {
            let e = e.ctx(format_args!("cannot list {}", d.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let vol = VolName::new(&name).ok();
            if let Some(vol) = vol.filter(|_| e.file_type().map(|t| t.is_dir()).unwrap_or(false)) {
                names.push(vol);
            } else if ignored.len() < sparsebak_common::proto::MAX_PROBLEMS {
                ignored.push(name.chars().take(200).collect());
            }
        }
        names.sort();
        ignored.sort();
        Ok((names, ignored))
    }

    /// Committed sessions and in-progress (`-tmp`) sessions of a volume.
    pub fn list_sessions(&self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)> {
        self.header()?;
        let d = self.vol_dir(vol);
        let (mut committed, mut tmp) = (Vec::new(), Vec::new());
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((committed, tmp)),
            Err(e) => {
                return Err(AgentError::io(
                    format_args!("cannot list {}", d.display()),
                    e,
                ))
            }
        };
        for e in rd {
            let name = e
                .ctx(format_args!("cannot list {}", d.display()))?
                .file_name();
            let name = name.to_string_lossy();
            if let Ok(s) = SessionName::new(&name) {
                committed.push(s);
            } else if let Some(base) = name.strip_suffix(TMP_SUFFIX) {
                if SessionName::new(base).is_ok() {
                    tmp.push(name.into_owned());
                }
            }
        }
        committed.sort();
        tmp.sort();
        Ok((committed, tmp))
    }

    /// Remove a volume's directory: rename it aside first so a crash midway
    /// never leaves a half-deleted volume under its own name.
    pub fn delete_volume(&self, vol: &VolName) -> Result<()> {
        self.require_write()?;
        let d = self.vol_dir(vol);
        if !d.exists() {
            return Err(AgentError::new(
                ErrorKind::NotFound,
                format!("volume {vol} is not in the archive"),
            ));
        }
        let trash = self.dir.join(format!(".deleting-{vol}"));
        if trash.exists() {
            fs::remove_dir_all(&trash).ctx(format_args!("cannot remove {}", trash.display()))?;
        }
        fs::rename(&d, &trash).ctx(format_args!("cannot move {} aside", d.display()))?;
        fsync_dir(&self.dir.join(VOLUMES_DIR))?;
        fs::remove_dir_all(&trash).ctx(format_args!("cannot remove {}", trash.display()))?;
        fsync_dir(&self.dir)
    }
}

/// A sparsebak 0.2 archive (crate::legacy): `<dest>/sparsebak/default`
/// must be a real directory (not a symlink).
fn check_legacy_set_dir(archive_dir: &Path) -> Result<()> {
    let set = archive_dir.join(LEGACY_SET_DIR);
    for d in [archive_dir, set.as_path()] {
        match d.symlink_metadata() {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(AgentError::invalid(format!(
                    "{} is not a directory (a symlink or a file); refusing to read a sparsebak 0.2 archive through it",
                    d.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::new(
                    ErrorKind::NotFound,
                    format!("no sparsebak 0.2 archive at {} (no such directory)", set.display()),
                ))
            }
            Err(e) => return Err(AgentError::io(format_args!("cannot stat {}", d.display()), e)),
        }
    }
    Ok(())
}

fn read_header(dir: &Path) -> Result<Option<ArchiveHeader>> {
    let path = dir.join(HEADER_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AgentError::io(
                format_args!("cannot open {}", path.display()),
                e,
            ))
        }
    };
    let mut buf = Vec::new();
    use std::io::Read;
    f.take(MAX_HEADER + 1)
        .read_to_end(&mut buf)
        .ctx(format_args!("cannot read {}", path.display()))?;
    if buf.len() as u64 > MAX_HEADER {
        return Err(AgentError::invalid(format!(
            "{} is larger than {MAX_HEADER} bytes",
            path.display()
        )));
    }
    ArchiveHeader::parse(&buf)
        .map(Some)
        .map_err(|e| AgentError::invalid(format!("{}: {e}", path.display())))
}
