//! Reading archives written by sparsebak 0.2 ("format 1"), read-only:
//! `list`, `receive` and `verify` (docs/FORMAT.md §14).
//!
//! 0.2 kept its local metadata in `<meta-dir>/default/` (archive.ini, and per
//! volume `volinfo` plus `S_*/{info,manifest}`) and its chunks on the
//! destination under `sparsebak/default/<vol>/S_*/<9hex>/x<16hex>`: zlib (or,
//! before 2019, gzip) streams whose manifest hash is the SHA-256 of the
//! compressed file. Every byte of that metadata is treated as untrusted:
//! lengths and line counts are bounded, names are validated before they
//! reach a path, chains are checked for loops and gaps, and every chunk is
//! hash-checked before it is decompressed.
//!
//! * [`ini`]: archive.ini. [`meta`]: volinfo, session info, the chain.
//! * [`manifest`]: manifest lines and the newest-first merge.
//! * [`chunk`]: bounded zlib/gzip decoding. [`restore`]: receive and verify.

pub mod chunk;
pub mod ini;
pub mod manifest;
pub mod meta;
pub mod restore;

use crate::config::{Config, SourceSpec, CONFIG_VERSION};
use crate::dest::DestSpec;
use crate::fsutil::read_bounded;
use anyhow::{anyhow, bail, Context, Result};
use sparsebak_common::legacy::{LegacyVolName, LEGACY_SET_DIR};
use sparsebak_common::units::ChunkSize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Limits on 0.2 metadata, all far above what 0.2 wrote.
pub struct Bounds;
impl Bounds {
    /// Longest line in archive.ini, volinfo or info.
    pub const LINE: usize = 4096;
    /// Largest archive.ini.
    pub const INI_FILE: u64 = 1024 * 1024;
    /// Largest volinfo or session info.
    pub const SMALL_FILE: u64 = 64 * 1024;
    /// Longest session chain followed.
    pub const CHAIN: usize = 1_000_000;
}

/// A malformed 0.2 metadata file; the message names the file and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LegacyError(pub String);

/// The `[var]` and `[volumes]` sections of archive.ini, validated.
#[derive(Clone, Debug)]
pub struct LegacyConfig {
    pub chunk_size: ChunkSize,
    pub compression: String,
    pub vg: Option<String>,
    pub pool: Option<String>,
    pub dest: DestSpec,
    pub uuid: Option<String>,
    /// Volume → enabled (anything but `disable`).
    pub volumes: BTreeMap<LegacyVolName, bool>,
}

/// A 0.2 archive as its local metadata describes it.
#[derive(Clone, Debug)]
pub struct LegacyArchive {
    /// `<meta-dir>/default`
    pub dir: PathBuf,
    pub config: LegacyConfig,
}

/// The `<meta-dir>/default/archive.ini` path.
pub fn ini_path(meta_dir: &Path) -> PathBuf {
    meta_dir.join(LEGACY_SET_DIR).join("archive.ini")
}

/// Does `meta_dir` hold a 0.2 archive?
pub fn exists(meta_dir: &Path) -> bool {
    ini_path(meta_dir).is_file()
}

/// 0.2's `destdir` is normalised with the mountpoint (`normpath`); we accept
/// `.` and empty components but never `..`.
fn subdir_of(destdir: &str) -> Result<String> {
    let parts: Vec<&str> = destdir
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if destdir.starts_with('/') || parts.contains(&"..") {
        bail!("archive.ini: destdir {destdir:?} must be relative and must not contain '..'");
    }
    crate::dest::clean_subdir(&parts.join("/"))
}

/// Map 0.2's `destsys` + `destmountpoint` (§7.1 of the 0.2 description) to
/// our destination types; the same agent transports then serve both.
pub fn dest_of(destsys: &str, mountpoint: &str, destdir: &str) -> Result<DestSpec> {
    let sys_ok = match destsys.split_once("://") {
        _ if destsys == "internal:" => true,
        Some(("ssh" | "qubes" | "qubes-ssh", sys)) => !sys.is_empty() && !sys.contains('/'),
        _ => false,
    };
    if !sys_ok {
        bail!(
            "archive.ini: destsys {destsys:?} is not internal:, ssh://[user@]host, qubes://VM or qubes-ssh://VM|[user@]host"
        );
    }
    if !mountpoint.starts_with('/') {
        bail!("archive.ini: destmountpoint {mountpoint:?} must be an absolute path");
    }
    DestSpec::parse(&format!("{destsys}{mountpoint}"), &subdir_of(destdir)?)
        .map_err(|e| anyhow!("archive.ini: destination {destsys}{mountpoint}: {e:#}"))
}

fn lvm_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 127
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
}

impl LegacyConfig {
    pub fn parse(text: &str) -> Result<LegacyConfig> {
        let s = ini::parse(text, "archive.ini")?;
        if let Some((name, _)) = s.iter().find(|(n, _)| n != "var" && n != "volumes") {
            bail!("archive.ini: unknown section [{name}]");
        }
        let var = ini::section(&s, "var");
        let get = |k: &str| var.get(k).map(String::as_str);
        let cs: u64 = get("chunksize").unwrap_or("65536").parse().map_err(|_| {
            anyhow!(
                "archive.ini: chunksize {:?} is not a number",
                get("chunksize")
            )
        })?;
        let chunk_size = ChunkSize::try_from(cs).map_err(|e| anyhow!("archive.ini: {e}"))?;
        let compression = get("compression").unwrap_or("zlib").to_string();
        if compression != "zlib" && compression != "gzip" {
            bail!("archive.ini: compression {compression:?} is not supported (sparsebak 0.2 wrote zlib)");
        }
        if let Some(h) = get("hashtype") {
            if h != "sha256" {
                bail!("archive.ini: hashtype {h:?} is not supported (sparsebak 0.2 used sha256)");
            }
        }
        let lvm = |k: &str| -> Result<Option<String>> {
            match get(k) {
                None => Ok(None),
                Some(v) if lvm_name_ok(v) => Ok(Some(v.to_string())),
                Some(v) => bail!("archive.ini: {k} {v:?} is not a valid LVM name"),
            }
        };
        let destsys = get("destsys")
            .context("archive.ini has no destsys: sparsebak 0.2 never sent a session from it")?;
        let mountpoint = get("destmountpoint")
            .context("archive.ini has no destmountpoint: the archive was never initialised")?;
        let dest = dest_of(destsys, mountpoint, get("destdir").unwrap_or("."))?;
        let mut volumes = BTreeMap::new();
        for (name, value) in ini::section(&s, "volumes") {
            let v = LegacyVolName::new(&name).map_err(|e| anyhow!("archive.ini [volumes]: {e}"))?;
            volumes.insert(v, value != "disable");
        }
        Ok(LegacyConfig {
            chunk_size,
            compression,
            vg: lvm("vgname")?,
            pool: lvm("poolname")?,
            dest,
            uuid: get("uuid").map(str::to_string),
            volumes,
        })
    }
}

impl LegacyArchive {
    pub fn load(meta_dir: &Path) -> Result<LegacyArchive> {
        let p = ini_path(meta_dir);
        let bytes = read_bounded(&p, Bounds::INI_FILE)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow!("{} is not UTF-8 text", p.display()))?;
        let config = LegacyConfig::parse(text)
            .with_context(|| format!("sparsebak 0.2 configuration {}", p.display()))?;
        Ok(LegacyArchive {
            dir: meta_dir.join(LEGACY_SET_DIR),
            config,
        })
    }

    pub fn vol_dir(&self, vol: &LegacyVolName) -> PathBuf {
        self.dir.join(vol.as_str())
    }

    /// A configured, enabled volume by name.
    pub fn volume(&self, name: &str) -> Result<LegacyVolName> {
        let v = LegacyVolName::new(name)?;
        match self.config.volumes.get(&v) {
            Some(true) => Ok(v),
            Some(false) => bail!("volume {v} is disabled in the sparsebak 0.2 configuration"),
            None => bail!("volume {v} is not in the sparsebak 0.2 archive"),
        }
    }

    /// A configuration of our own that describes the same destination and
    /// pool, so the receive path (LV creation, transports) works unchanged.
    /// It is never saved.
    pub fn as_config(&self) -> Config {
        let c = &self.config;
        Config {
            config_version: CONFIG_VERSION,
            uuid: c.uuid.clone().unwrap_or_default(),
            source: match (&c.vg, &c.pool) {
                (Some(vg), Some(pool)) => Some(SourceSpec::Lvm {
                    vg: vg.clone(),
                    pool: pool.clone(),
                }),
                _ => None,
            },
            dest: c.dest.clone(),
            chunk_size: c.chunk_size,
            compression: "zlib:4".parse().expect("valid compression"),
            zstd_checksum: false,
            volumes: Default::default(),
            qubes: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::DestKind;

    #[test]
    fn destinations_map_to_ours() {
        let d = dest_of("internal:", "/mnt/bk", ".").unwrap();
        assert_eq!(
            (d.kind.clone(), d.dest_path()),
            (DestKind::Internal, "/mnt/bk".to_string())
        );
        let d = dest_of("ssh://user@host", "/mnt/bk", "./a/b/").unwrap();
        assert_eq!(d.dest_path(), "/mnt/bk/a/b");
        assert!(
            matches!(d.kind, DestKind::Ssh { ref target, port: None } if target == "user@host")
        );
        let d = dest_of("qubes://backup", "/mnt/volume", "backups").unwrap();
        assert!(matches!(d.kind, DestKind::Qubes { ref vm } if vm == "backup"));
        let d = dest_of("qubes-ssh://sys-net|u@nas", "/srv", ".").unwrap();
        assert!(matches!(d.kind, DestKind::QubesSsh { ref vm, .. } if vm == "sys-net"));
        for (sys, mp, dir) in [
            ("internal:x", "/mnt", "."),
            ("ftp://h", "/mnt", "."),
            ("ssh://-oProxyCommand=x", "/mnt", "."),
            ("ssh://h/evil", "/mnt", "."),
            ("internal:", "mnt", "."),
            ("internal:", "/mnt", "../etc"),
            ("internal:", "/mnt", "/etc"),
            ("internal:", "/mnt/../etc", "."),
        ] {
            assert!(dest_of(sys, mp, dir).is_err(), "{sys} {mp} {dir}");
        }
    }

    /// Mutated and truncated inputs never panic a parser (a poor man's fuzzer:
    /// every byte of this metadata comes from outside sparsebak).
    #[test]
    fn parsers_survive_garbage() {
        let ini = "[var]\nchunksize = 65536\ndestsys = ssh://u@h\ndestmountpoint = /mnt\ndestdir = ./a\n[volumes]\nvm-a = enable\n";
        let line = format!("{} x0000000000010000", "ab".repeat(32));
        let chunk = {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(4));
            e.write_all(&[3u8; 3000]).unwrap();
            e.finish().unwrap()
        };
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let specials = b"[]=:#; \n\txX0fF/.\xff";
        for _ in 0..20_000 {
            for base in [ini.as_bytes(), line.as_bytes(), &chunk[..]] {
                let mut b = base.to_vec();
                for _ in 0..(rnd() % 4 + 1) {
                    let i = (rnd() as usize) % b.len();
                    b[i] = if rnd() % 2 == 0 {
                        specials[(rnd() as usize) % specials.len()]
                    } else {
                        rnd() as u8
                    };
                }
                b.truncate((rnd() as usize) % (b.len() + 1));
                let text = String::from_utf8_lossy(&b);
                let _ = LegacyConfig::parse(&text);
                let _ = manifest::LegacyEntry::parse(&text);
                let _ = chunk::decode(&b, 65536);
            }
        }
    }

    #[test]
    fn config_rules() {
        let base = "[var]\ndestsys = internal:\ndestmountpoint = /mnt\n";
        let c =
            LegacyConfig::parse(&format!("{base}[volumes]\na = enable\nb = disable\n")).unwrap();
        assert_eq!(c.chunk_size.bytes(), 65536);
        assert_eq!(c.volumes.len(), 2);
        for bad in [
            format!("{base}chunksize = 1000\n"),
            format!("{base}compression = lzma\n"),
            format!("{base}hashtype = md5\n"),
            format!("{base}vgname = -x\n"),
            format!("{base}[volumes]\n.. = enable\n"),
            format!("{base}[other]\n"),
            "[var]\ndestmountpoint = /mnt\n".to_string(),
        ] {
            assert!(LegacyConfig::parse(&bad).is_err(), "{bad}");
        }
    }
}
