//! [`Lvm`] over the real tools: lvs (JSON report), lvcreate, lvremove,
//! lvrename, lvresize, dmsetup, thin_delta.

use super::delta::{self, BlockSectors, DeltaRun};
use super::dm::{dm_name, pool_device, tmeta_path};
use super::thinmap::{self, DumpError, MappedBlocks, Parsed};
use super::{LvInfo, Lvm, Survey};
use crate::process::{run, run_with};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use sparsebak_common::units::Bytes;
use std::process::Command;

/// Oldest thin-provisioning-tools whose thin_delta has `-m` and `--thin1`.
pub const MIN_THIN_TOOLS: (u32, u32, u32) = (0, 7, 0);

#[derive(Default)]
pub struct LvmCli;

fn lvm(args: &[&str]) -> Result<Vec<u8>> {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .env("LC_ALL", "C")
        .env("LVM_SUPPRESS_FD_WARNINGS", "1");
    run(&mut c, 64 << 20)
}

#[derive(Deserialize)]
struct Report {
    report: Vec<ReportLvs>,
}
#[derive(Deserialize)]
struct ReportLvs {
    lv: Vec<ReportLv>,
}
#[derive(Deserialize)]
struct ReportLv {
    lv_name: String,
    lv_attr: String,
    lv_size: String,
    #[serde(default)]
    pool_lv: String,
    #[serde(default)]
    thin_id: String,
}

/// Parse `lvs --reportformat json --units b --nosuffix` output.
pub fn parse_lvs(json: &[u8]) -> Result<Survey> {
    let r: Report =
        serde_json::from_slice(json).context("lvs printed a report sparsebak cannot parse")?;
    let mut out = Survey::new();
    for lv in r.report.into_iter().flat_map(|r| r.lv) {
        let size = lv
            .lv_size
            .trim_end_matches('B')
            .parse::<u64>()
            .map_err(|_| anyhow!("lvs: bad size {:?} for {}", lv.lv_size, lv.lv_name))?;
        let thin_id = match lv.thin_id.as_str() {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| anyhow!("lvs: bad thin_id {s:?} for {}", lv.lv_name))?,
            ),
        };
        out.insert(
            lv.lv_name.clone(),
            LvInfo {
                name: lv.lv_name,
                attr: lv.lv_attr,
                size: Bytes(size),
                pool: lv.pool_lv,
                thin_id,
            },
        );
    }
    Ok(out)
}

/// Parse `thin_delta -V` ("0.9.0", "1.0.12").
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
}

impl LvmCli {
    /// Check that thin_delta is installed and new enough.
    pub fn check_thin_delta(&self) -> Result<()> {
        let out = run(Command::new("thin_delta").arg("-V"), 4096).context(
            "thin_delta is needed for LVM thin volumes: install thin-provisioning-tools",
        )?;
        let text = String::from_utf8_lossy(&out);
        let v = parse_version(&text)
            .ok_or_else(|| anyhow!("cannot read thin_delta's version from {text:?}"))?;
        if v < MIN_THIN_TOOLS {
            bail!(
                "thin_delta {}.{}.{} is too old: sparsebak needs thin-provisioning-tools {}.{}.{} or later",
                v.0, v.1, v.2, MIN_THIN_TOOLS.0, MIN_THIN_TOOLS.1, MIN_THIN_TOOLS.2
            );
        }
        Ok(())
    }
}

/// Whether `dmsetup table` of a thin device shows an external origin
/// ("0 LEN thin POOL_DEV DEV_ID [EXTERNAL_ORIGIN_DEV]"), whose blocks an
/// unprovisioned thin block reads through to: then unmapped is not zero.
pub fn has_external_origin(table: &str) -> Result<bool> {
    let f: Vec<&str> = table.split_whitespace().collect();
    if f.len() < 5 || f[2] != "thin" || table.trim().lines().count() != 1 {
        bail!("unexpected device-mapper table {table:?}");
    }
    Ok(f.len() > 5)
}

impl LvmCli {
    /// Unmapped blocks of `lv` read as zeros only without an external origin.
    fn check_no_external_origin(&self, vg: &str, lv: &str) -> Result<()> {
        let dev = dm_name(vg, lv);
        let out = run(Command::new("dmsetup").args(["table", &dev]), 4096)?;
        if has_external_origin(&String::from_utf8_lossy(&out))? {
            bail!("{vg}/{lv} has an external origin: its unprovisioned blocks are not zeros");
        }
        Ok(())
    }

    fn thin_dump(&self, vg: &str, pool: &str, lv: &LvInfo) -> Result<MappedBlocks, DumpError> {
        let id = lv
            .thin_id
            .ok_or_else(|| DumpError::Unavailable(anyhow!("{vg}/{} has no thin id", lv.name)))?;
        let mut c = Command::new("thin_dump");
        c.args(["-m", "--dev-id", &id.to_string(), &tmeta_path(vg, pool)]);
        let parsed = run_with(&mut c, |out| {
            Ok(thinmap::parse(std::io::BufReader::new(out), id, lv.size))
        })
        .map_err(DumpError::Unavailable)?;
        match parsed {
            Ok(Parsed::Map(m)) => Ok(m),
            Ok(Parsed::Unsupported(why)) => Err(DumpError::Unavailable(anyhow!("{why}"))),
            Err(e) => Err(DumpError::Refused(e)),
        }
    }
}

impl Lvm for LvmCli {
    fn check_thin_delta(&self) -> Result<()> {
        LvmCli::check_thin_delta(self)
    }
    fn device_path(&self, vg: &str, lv: &str) -> std::path::PathBuf {
        super::dm::lv_path(vg, lv).into()
    }
    fn survey(&self, vg: &str) -> Result<Survey> {
        let out = lvm(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-a",
            "-o",
            "lv_name,lv_attr,lv_size,pool_lv,thin_id",
            "--",
            vg,
        ])
        .with_context(|| format!("cannot list the logical volumes of volume group {vg}"))?;
        parse_lvs(&out)
    }
    fn snapshot(&self, vg: &str, origin: &str, name: &str) -> Result<()> {
        lvm(&[
            "lvcreate",
            "-q",
            "-pr",
            "-kn",
            "-ay",
            "-s",
            &format!("{vg}/{origin}"),
            "-n",
            name,
        ])
        .with_context(|| format!("cannot create snapshot {vg}/{name} of {origin}"))
        .map(drop)
    }
    fn remove(&self, vg: &str, lv: &str) -> Result<()> {
        lvm(&["lvremove", "-q", "-f", &format!("{vg}/{lv}")])
            .with_context(|| format!("cannot remove {vg}/{lv}"))
            .map(drop)
    }
    fn rename(&self, vg: &str, from: &str, to: &str) -> Result<()> {
        lvm(&["lvrename", "-q", vg, from, to])
            .with_context(|| format!("cannot rename {vg}/{from} to {to}"))
            .map(drop)
    }
    fn create_thin(&self, vg: &str, pool: &str, name: &str, size: Bytes) -> Result<()> {
        lvm(&[
            "lvcreate",
            "-q",
            "-kn",
            "-ay",
            "-V",
            &format!("{}b", size.0),
            "--thin",
            "-n",
            name,
            &format!("{vg}/{pool}"),
        ])
        .with_context(|| format!("cannot create thin volume {vg}/{name} in pool {pool}"))
        .map(drop)
    }
    fn resize(&self, vg: &str, lv: &str, size: Bytes) -> Result<()> {
        lvm(&[
            "lvresize",
            "-q",
            "-f",
            "-L",
            &format!("{}b", size.0),
            &format!("{vg}/{lv}"),
        ])
        .with_context(|| format!("cannot resize {vg}/{lv}"))
        .map(drop)
    }
    fn metadata_snap_root(&self, vg: &str, pool: &str) -> Result<Option<u64>> {
        let dev = pool_device(vg, pool);
        let out = run(Command::new("dmsetup").args(["status", &dev]), 4096)
            .with_context(|| format!("cannot read the status of thin pool {vg}/{pool}"))?;
        let text = String::from_utf8_lossy(&out);
        // "<start> <len> thin-pool <transaction> <meta used/total> <data used/total> <held root> ..."
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.get(2) != Some(&"thin-pool") || f.len() < 7 {
            bail!("unexpected dmsetup status for {dev}: {text:?}");
        }
        match f[6] {
            "-" => Ok(None),
            r => r
                .parse::<u64>()
                .map(Some)
                .map_err(|_| anyhow!("unexpected held metadata root {r:?} for {dev}: {text:?}")),
        }
    }
    fn reserve_metadata_snap(&self, vg: &str, pool: &str) -> Result<()> {
        run(
            Command::new("dmsetup").args([
                "message",
                &pool_device(vg, pool),
                "0",
                "reserve_metadata_snap",
            ]),
            4096,
        )
        .with_context(|| format!("cannot reserve the metadata snapshot of pool {vg}/{pool}"))
        .map(drop)
    }
    fn release_metadata_snap(&self, vg: &str, pool: &str) -> Result<()> {
        run(
            Command::new("dmsetup").args([
                "message",
                &pool_device(vg, pool),
                "0",
                "release_metadata_snap",
            ]),
            4096,
        )
        .with_context(|| format!("cannot release the metadata snapshot of pool {vg}/{pool}"))
        .map(drop)
    }
    fn thin_delta(
        &self,
        vg: &str,
        pool: &str,
        left: u64,
        right: u64,
        on_run: &mut dyn FnMut(BlockSectors, DeltaRun) -> Result<()>,
    ) -> Result<BlockSectors> {
        let mut c = Command::new("thin_delta");
        c.args([
            "-m",
            "--thin1",
            &left.to_string(),
            "--thin2",
            &right.to_string(),
            &tmeta_path(vg, pool),
        ]);
        run_with(&mut c, |out| {
            delta::parse(std::io::BufReader::new(out), left, right, |d, r| {
                on_run(d, r)
            })
        })
        .with_context(|| {
            format!(
                "cannot compute changes in pool {vg}/{pool} between thin ids {left} and {right}"
            )
        })
    }
    fn mapped_blocks(&self, vg: &str, pool: &str, lv: &LvInfo) -> Result<MappedBlocks, DumpError> {
        self.check_no_external_origin(vg, &lv.name)
            .map_err(DumpError::Unavailable)?;
        self.thin_dump(vg, pool, lv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lvs_json() {
        let j = br#"{"report":[{"lv":[
            {"lv_name":"pool00","lv_attr":"twi-aotz--","lv_size":"1073741824","pool_lv":"","thin_id":""},
            {"lv_name":"vm-a-private","lv_attr":"Vwi-a-tz--","lv_size":"104857600","pool_lv":"pool00","thin_id":"3"}]}]}"#;
        let s = parse_lvs(j).unwrap();
        assert!(s["pool00"].is_thin_pool());
        let v = &s["vm-a-private"];
        assert!(
            v.is_thin_volume()
                && v.thin_id == Some(3)
                && v.size == Bytes(104857600)
                && v.pool == "pool00"
        );
        assert!(parse_lvs(b"{}").is_err());
        assert!(parse_lvs(
            br#"{"report":[{"lv":[{"lv_name":"x","lv_attr":"V","lv_size":"1.5g"}]}]}"#
        )
        .is_err());
    }

    #[test]
    fn external_origins() {
        assert!(!has_external_origin("0 2097152 thin 253:2 5\n").unwrap());
        assert!(has_external_origin("0 2097152 thin 253:2 5 253:7\n").unwrap());
        assert!(has_external_origin("0 2097152 linear 8:1 0").is_err());
        assert!(has_external_origin("").is_err());
        assert!(has_external_origin("0 8 thin 253:2 5\n8 8 thin 253:2 6").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("0.9.0\n"), Some((0, 9, 0)));
        assert_eq!(parse_version("thin_delta 1.0.12"), Some((1, 0, 12)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("0.6.3").unwrap() < MIN_THIN_TOOLS);
    }
}
