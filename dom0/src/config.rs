//! The local configuration, `<meta-dir>/archive.json`: which archive, where
//! it is, how chunks are made, and which volumes belong to it.

use crate::dest::DestSpec;
use crate::fsutil::write_atomic;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::header::Compression;
use sparsebak_common::names::VolName;
use sparsebak_common::units::ChunkSize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "archive.json";
pub const CONFIG_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceSpec {
    /// Volumes are image files or block devices in this directory.
    Dir { path: PathBuf },
    /// Volumes are thin LVs in this pool.
    Lvm { vg: String, pool: String },
    /// Volumes are image files in this directory on a reflink file system
    /// (Btrfs, XFS), laid out as a Qubes file-reflink pool
    /// (crate::reflink::layout), with change tracking by reflink copies.
    Reflink { path: PathBuf },
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    /// `dir:/path`, `/path` (a directory of images), `reflink:/path` (a
    /// pool of images on Btrfs or XFS), or `VG/POOL`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("reflink:") {
            if !p.starts_with('/') {
                return Err(format!(
                    "--source {s:?}: a reflink source needs an absolute path"
                ));
            }
            return Ok(SourceSpec::Reflink { path: p.into() });
        }
        if let Some(p) = s.strip_prefix("dir:").or(s.starts_with('/').then_some(s)) {
            if !p.starts_with('/') {
                return Err(format!(
                    "--source {s:?}: a directory source needs an absolute path"
                ));
            }
            return Ok(SourceSpec::Dir { path: p.into() });
        }
        let ok = |n: &str| {
            !n.is_empty()
                && !n.starts_with('-')
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
        };
        match s.split_once('/') {
            Some((vg, pool)) if ok(vg) && ok(pool) => Ok(SourceSpec::Lvm {
                vg: vg.into(),
                pool: pool.into(),
            }),
            _ => Err(format!(
                "--source {s:?} is neither VG/POOL, dir:/absolute/path nor reflink:/absolute/path"
            )),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeEntry {
    pub enabled: bool,
    /// Explicit image file or block device; otherwise derived from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Rebuilt by `arch-recover`: where the volume is read from is not known
    /// until `add` names it again, so nothing reads its source until then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
    /// The LV in the archive's VG that holds this volume, when it is not
    /// named like the volume: a qube's volume is archived under a name
    /// made from the qube's uuid (`qube.<uuid>.private`) while its LV
    /// follows the qube's current name (`vm-work-private`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv: Option<String>,
}

/// A qube added with `add --qube` (see [`crate::qubes`]), keyed in
/// [`Config::qubes`] by the uuid its archive volumes are named after.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QubeEntry {
    /// The qube's name when it was last added, sent or restored.
    pub name: String,
    /// The qube's uuid in Qubes now; differs from the key after
    /// restore-qube recreated the qube (Qubes gives a new qube a new uuid).
    pub uuid: String,
    /// Its class (AppVM, TemplateVM, StandaloneVM).
    pub class: String,
    /// The qube's volumes that are backed up (`private`, `root`).
    pub volumes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub config_version: u32,
    /// Archive identity; must match the destination's header.
    pub uuid: String,
    #[serde(default)]
    pub source: Option<SourceSpec>,
    pub dest: DestSpec,
    pub chunk_size: ChunkSize,
    pub compression: Compression,
    /// New zstd chunk files carry zstd's content checksum, which then
    /// proves their decoded bytes on receive and verify in place of a
    /// second SHA-256 pass (docs/FORMAT.md §22.3). Set by `arch-init` from
    /// this version on; absent (false) for archives made before, so every
    /// chunk file of an archive is encoded the same way and `--dedup`
    /// keeps finding the same bytes for the same data.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zstd_checksum: bool,
    #[serde(default)]
    pub volumes: BTreeMap<VolName, VolumeEntry>,
    /// Qubes added with `add --qube`, by the uuid in their archive volume
    /// names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub qubes: BTreeMap<String, QubeEntry>,
}

impl Config {
    pub fn path(meta: &Path) -> PathBuf {
        meta.join(CONFIG_FILE)
    }

    pub fn exists(meta: &Path) -> bool {
        Self::path(meta).exists()
    }

    pub fn load(meta: &Path) -> Result<Config> {
        let p = Self::path(meta);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no sparsebak archive is configured in {} (run `sparsebak arch-init` first, or pass --meta-dir)",
                meta.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
        };
        let c: Config = serde_json::from_slice(&bytes)
            .with_context(|| format!("configuration {} is invalid", p.display()))?;
        if c.config_version != CONFIG_VERSION {
            bail!(
                "configuration {} has version {}, this sparsebak reads {CONFIG_VERSION}",
                p.display(),
                c.config_version
            );
        }
        Ok(c)
    }

    pub fn save(&self, meta: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        write_atomic(&Self::path(meta), &text)
    }

    /// The configured, enabled volume, or an error naming it.
    pub fn volume(&self, vol: &VolName) -> Result<&VolumeEntry> {
        match self.volumes.get(vol) {
            Some(v) if v.enabled => Ok(v),
            Some(_) => bail!("volume {vol} is disabled in the configuration"),
            None => bail!("volume {vol} is not configured (add it with `sparsebak add {vol}`)"),
        }
    }

    /// The volume's source may be read: it is configured, enabled, and not
    /// waiting for `add` after `arch-recover`.
    pub fn source_known(&self, vol: &VolName) -> Result<&VolumeEntry> {
        let v = self.volume(vol)?;
        if v.recovered {
            bail!(
                "volume {vol} was recovered from the archive by arch-recover and its source is not \
                 confirmed yet: run `sparsebak add {vol}` (with --path=IMAGE_OR_DEVICE unless it is \
                 in the archive's --source), then send continues its chain"
            );
        }
        Ok(v)
    }

    /// Where to read a file-backed volume from.
    pub fn volume_path(&self, vol: &VolName) -> Result<PathBuf> {
        let v = self.source_known(vol)?;
        match (&v.path, &self.source) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(SourceSpec::Dir { path })) => Ok(path.join(vol.as_str())),
            (None, Some(SourceSpec::Lvm { vg, .. })) => Ok(PathBuf::from(format!(
                "/dev/{vg}/{}",
                v.lv.as_deref().unwrap_or(vol.as_str())
            ))),
            (None, Some(SourceSpec::Reflink { path })) => Ok(crate::reflink::layout::image_path(
                path,
                v.lv.as_deref().unwrap_or(vol.as_str()),
            )),
            (None, None) => bail!("volume {vol} has no path and the archive has no --source"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs() {
        assert_eq!(
            "qubes_dom0/pool00".parse(),
            Ok(SourceSpec::Lvm {
                vg: "qubes_dom0".into(),
                pool: "pool00".into()
            })
        );
        assert_eq!(
            "/srv/img".parse(),
            Ok(SourceSpec::Dir {
                path: "/srv/img".into()
            })
        );
        assert_eq!(
            "dir:/srv/img".parse(),
            Ok(SourceSpec::Dir {
                path: "/srv/img".into()
            })
        );
        assert_eq!(
            "reflink:/var/lib/qubes".parse(),
            Ok(SourceSpec::Reflink {
                path: "/var/lib/qubes".into()
            })
        );
        for bad in [
            "dir:rel",
            "reflink:rel",
            "reflink:",
            "vg",
            "vg/",
            "/",
            "vg/po/ol",
            "v g/p",
            "-vg/p",
        ] {
            let r: Result<SourceSpec, _> = bad.parse();
            if bad == "/" {
                continue; // a root directory source is odd but well-formed
            }
            assert!(r.is_err(), "{bad}");
        }
    }
}
