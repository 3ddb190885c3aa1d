//! 0.2's per-volume `volinfo` and per-session `info`: `key = value` lines
//! (separator exactly ` = `), and the session chain rebuilt from `last` by
//! following each session's `previous`, as 0.2 did, but with every gap and
//! loop reported instead of papered over.

use super::{Bounds, LegacyArchive};
use crate::fsutil::read_bounded;
use anyhow::{anyhow, bail, Context, Result};
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::SessionName;
use sparsebak_common::units::{Bytes, ChunkSize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// The only format version sparsebak 0.2 wrote.
pub const FORMAT_VER: u64 = 1;

/// One session as 0.2's `info` describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LegacySession {
    pub name: SessionName,
    pub volsize: Bytes,
    pub sequence: Option<u64>,
    pub previous: Option<SessionName>,
    /// `folders`, or `tar` for 0.2's broken --tarfile mode.
    pub format: String,
    /// Older sessions record their own chunk size.
    pub chunk_size: Option<u64>,
}

/// Parse `key = value` lines, bounded and without duplicates.
pub fn parse_kv(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = read_bounded(path, Bounds::SMALL_FILE)?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{} line {}", path.display(), i + 1);
        if line.len() > Bounds::LINE {
            bail!("{}: line too long", at());
        }
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(" = ")
            .ok_or_else(|| anyhow!("{}: expected `key = value`, got {line:?}", at()))?;
        if k.is_empty() || out.insert(k.to_string(), v.to_string()).is_some() {
            bail!("{}: empty or repeated key {k:?}", at());
        }
    }
    Ok(out)
}

fn session_or_none(v: &str, what: &str) -> Result<Option<SessionName>> {
    match v {
        "none" | "None" | "" => Ok(None),
        s => SessionName::new(s)
            .map(Some)
            .map_err(|e| anyhow!("{what}: {e}")),
    }
}

fn number(kv: &BTreeMap<String, String>, k: &str, what: &str) -> Result<Option<u64>> {
    kv.get(k)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| anyhow!("{what}: {k} {v:?} is not a number"))
        })
        .transpose()
}

impl LegacyArchive {
    /// The newest session named by `volinfo`, after checking `format_ver`.
    pub fn last_session(&self, vol: &LegacyVolName) -> Result<Option<SessionName>> {
        let p = self.vol_dir(vol).join("volinfo");
        if !p.exists() {
            return Ok(None);
        }
        let kv = parse_kv(&p)?;
        let what = format!("volume info {}", p.display());
        match number(&kv, "format_ver", &what)? {
            Some(v) if v > FORMAT_VER => bail!(
                "{what}: format_ver {v} is newer than sparsebak 0.2's format 1, which is all this sparsebak can read"
            ),
            Some(0) => bail!("{what}: format_ver 0 is not a sparsebak 0.2 format"),
            _ => {}
        }
        session_or_none(kv.get("last").map(String::as_str).unwrap_or("none"), &what)
    }

    pub fn load_session(&self, vol: &LegacyVolName, s: &SessionName) -> Result<LegacySession> {
        let p = self.vol_dir(vol).join(s.as_str()).join("info");
        let kv = parse_kv(&p)?;
        let what = format!("session info {}", p.display());
        let volsize =
            number(&kv, "volsize", &what)?.ok_or_else(|| anyhow!("{what}: no volsize"))?;
        let format = kv
            .get("format")
            .cloned()
            .unwrap_or_else(|| "folders".into());
        if format != "folders" && format != "tar" {
            bail!("{what}: unknown format {format:?}");
        }
        Ok(LegacySession {
            name: s.clone(),
            volsize: Bytes(volsize),
            sequence: number(&kv, "sequence", &what)?,
            previous: session_or_none(
                kv.get("previous").map(String::as_str).unwrap_or("none"),
                &what,
            )?,
            format,
            chunk_size: number(&kv, "chunksize", &what)?,
        })
    }

    /// The chain of a volume, oldest first. A missing session, a loop, or a
    /// chain longer than any real one is an error naming the volume and session.
    pub fn chain(&self, vol: &LegacyVolName) -> Result<Vec<LegacySession>> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut next = self.last_session(vol)?;
        let mut after: Option<SessionName> = None;
        while let Some(s) = next {
            if !seen.insert(s.clone()) || out.len() >= Bounds::CHAIN {
                bail!("session chain of volume {vol} loops at {s}");
            }
            let info = self.load_session(vol, &s).with_context(|| match &after {
                Some(a) => {
                    format!("session chain of volume {vol} is broken: {s} (previous of {a})")
                }
                None => format!("session chain of volume {vol} is broken: {s} (its last session)"),
            })?;
            next = info.previous.clone();
            after = Some(s);
            out.push(info);
        }
        out.reverse();
        Ok(out)
    }

    /// The chunk size of a restore through `chain`: every session's own
    /// (older ones record it) or else the archive's, and all must agree.
    pub fn chain_chunk_size(
        &self,
        vol: &LegacyVolName,
        chain: &[LegacySession],
    ) -> Result<ChunkSize> {
        let archive = self.config.chunk_size;
        for s in chain {
            if let Some(c) = s.chunk_size.filter(|c| *c != archive.bytes()) {
                let own = ChunkSize::try_from(c)
                    .map_err(|e| anyhow!("session {} of {vol}: {e}", s.name))?;
                if chain
                    .iter()
                    .any(|o| o.chunk_size.unwrap_or(archive.bytes()) != c)
                {
                    bail!(
                        "sessions of volume {vol} use different chunk sizes ({} declares {c}, the archive {}): this sparsebak cannot restore through them",
                        s.name,
                        archive.bytes()
                    );
                }
                return Ok(own);
            }
        }
        Ok(archive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::LegacyConfig;

    fn arch(cs: u64) -> LegacyArchive {
        let ini = format!("[var]\nchunksize = {cs}\ndestsys = internal:\ndestmountpoint = /mnt\n");
        LegacyArchive {
            dir: "/nonexistent".into(),
            config: LegacyConfig::parse(&ini).unwrap(),
        }
    }

    fn ses(name: &str, cs: Option<u64>) -> LegacySession {
        LegacySession {
            name: SessionName::new(name).unwrap(),
            volsize: Bytes(1),
            sequence: None,
            previous: None,
            format: "folders".into(),
            chunk_size: cs,
        }
    }

    #[test]
    fn chunk_size_of_a_chain() {
        let v = LegacyVolName::new("v").unwrap();
        let a = arch(65536);
        let old = ses("S_20181101-000000", Some(131072));
        let new = ses("S_20190601-000000", None);
        // Sessions that record their own size win over archive.ini...
        let c = a.chain_chunk_size(&v, std::slice::from_ref(&old)).unwrap();
        assert_eq!(c.bytes(), 131072);
        assert_eq!(
            a.chain_chunk_size(&v, std::slice::from_ref(&new))
                .unwrap()
                .bytes(),
            65536
        );
        // ...but a chain mixing sizes cannot be restored.
        let e = a.chain_chunk_size(&v, &[old.clone(), new]).unwrap_err();
        assert!(e.to_string().contains("use different chunk sizes"), "{e}");
        assert!(a
            .chain_chunk_size(&v, &[ses("S_20181101-000000", Some(1000))])
            .is_err());
        assert_eq!(
            arch(131072).chain_chunk_size(&v, &[old]).unwrap().bytes(),
            131072
        );
    }

    #[test]
    fn key_value_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("info");
        std::fs::write(&p, "volsize = 10\nprevious = none\n").unwrap();
        assert_eq!(parse_kv(&p).unwrap()["volsize"], "10");
        for bad in ["volsize=10\n", "a = 1\na = 2\n", " = x\n"] {
            std::fs::write(&p, bad).unwrap();
            assert!(parse_kv(&p).is_err(), "{bad:?}");
        }
    }
}
