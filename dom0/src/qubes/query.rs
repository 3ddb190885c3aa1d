//! Asking Qubes' dom0 tools about qubes, volumes and pools, and parsing
//! their answers strictly. The output formats are the tools' own
//! (qubes-core-admin-client `qubesadmin/tools/`), quoted where parsed; the
//! stand-ins in `tests/standins/` print the same.

use super::{check_qube_name, check_uuid, QvmTools};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;

/// One line of `qvm-ls --raw-data --fields NAME,CLASS,STATE,UUID,TEMPLATE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QubeInfo {
    pub name: String,
    /// `AppVM`, `TemplateVM`, `StandaloneVM`, `DispVM`, `AdminVM`.
    pub class: String,
    /// `get_power_state()`: `Running`, `Halted`, `Paused`, `Transient`, …
    pub state: String,
    pub uuid: String,
    pub template: Option<String>,
}

impl QubeInfo {
    pub fn halted(&self) -> bool {
        self.state == "Halted"
    }
}

/// Every qube but dom0.
///
/// qvm_ls.py `Table.write_table` with `--raw-data`: one line per qube,
/// `stream.write('|'.join(self.get_row(vm)) + '\n')`, each cell
/// `self.format(vm) or '-'` (so a qube without a template shows `-`).
pub fn list_qubes(qvm: &dyn QvmTools) -> Result<Vec<QubeInfo>> {
    let argv = [
        "qvm-ls",
        "--raw-data",
        "--fields",
        "NAME,CLASS,STATE,UUID,TEMPLATE",
    ];
    let out = qvm.run(&argv)?;
    let text = String::from_utf8(out).context("qvm-ls printed something that is not UTF-8")?;
    let mut qubes = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let q = parse_ls_line(line).with_context(|| format!("qvm-ls printed {line:?}"))?;
        if q.class != "AdminVM" {
            qubes.push(q);
        }
    }
    Ok(qubes)
}

fn parse_ls_line(line: &str) -> Result<QubeInfo> {
    let f: Vec<&str> = line.split('|').collect();
    let [name, class, state, uuid, template] = f[..] else {
        bail!("expected 5 fields separated by |");
    };
    check_qube_name(name)?;
    check_uuid(uuid)?;
    if !class.bytes().all(|b| b.is_ascii_alphanumeric()) || class.is_empty() {
        bail!("class {class:?}");
    }
    let template = match template {
        "-" => None,
        t => {
            check_qube_name(t)?;
            Some(t.to_string())
        }
    };
    Ok(QubeInfo {
        name: name.into(),
        class: class.into(),
        state: state.into(),
        uuid: uuid.into(),
        template,
    })
}

/// Rows of `qubesadmin.tools.print_table` (`column -t`): a key, blanks, a
/// value that may be empty. Lines from `stop` on are not rows.
fn table(text: &str, stop: &str) -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with(stop) {
            break;
        }
        let line = line.trim_end();
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if !k.is_empty() {
            rows.insert(k.to_string(), v.trim().to_string());
        }
    }
    rows
}

/// A qube's volume, from `qvm-volume info QUBE:VOLUME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub pool: String,
    /// `VG/LV` for LVM pools (qubes/storage/lvm.py `ThinVolume.vid`).
    pub vid: String,
    pub save_on_stop: bool,
    pub snap_on_start: bool,
    pub revisions_to_keep: i64,
    pub size: u64,
}

/// qvm_volume.py `info_volume`: `print_table` of `pool`, `vid`, `rw`,
/// `source`, `save_on_stop`, `snap_on_start`, `size`, `usage`,
/// `revisions_to_keep`, `is_outdated` (`str()` of each, `''` for None),
/// then `Available revisions (for revert): …`.
pub fn volume_info(qvm: &dyn QvmTools, qube: &str, volume: &str) -> Result<VolumeInfo> {
    check_qube_name(qube)?;
    let spec = format!("{qube}:{volume}");
    let out = qvm.run(&["qvm-volume", "info", &spec])?;
    let text = String::from_utf8_lossy(&out);
    let t = table(&text, "Available revisions");
    parse_volume_info(&t).with_context(|| format!("qvm-volume info {spec}"))
}

fn parse_volume_info(t: &BTreeMap<String, String>) -> Result<VolumeInfo> {
    let get = |k: &str| {
        t.get(k)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no {k} in its output"))
    };
    let flag = |k: &str| -> Result<bool> {
        match get(k)? {
            "True" => Ok(true),
            "False" => Ok(false),
            v => bail!("{k} is {v:?}, not True or False"),
        }
    };
    let num =
        |k: &str| -> Result<i64> { get(k)?.parse().map_err(|_| anyhow!("{k} is not a number")) };
    let size = num("size")?;
    Ok(VolumeInfo {
        pool: get("pool")?.to_string(),
        vid: get("vid")?.to_string(),
        save_on_stop: flag("save_on_stop")?,
        snap_on_start: flag("snap_on_start")?,
        revisions_to_keep: num("revisions_to_keep")?,
        size: u64::try_from(size).map_err(|_| anyhow!("size {size} is negative"))?,
    })
}

/// A storage pool, from `qvm-pool info POOL` (R4.1 and later; qvm_pool.py
/// `info_pools`: `print_table` of `name`, `driver`, then the pool's
/// config such as `volume_group` and `thin_pool`, then sizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub driver: String,
    pub volume_group: Option<String>,
    pub thin_pool: Option<String>,
    /// A file-reflink pool's directory.
    pub dir_path: Option<String>,
}

pub fn pool_info(qvm: &dyn QvmTools, pool: &str) -> Result<PoolInfo> {
    if pool.is_empty() || pool.starts_with('-') || pool.contains(char::is_whitespace) {
        bail!("{pool:?} is not a pool name");
    }
    let out = qvm.run(&["qvm-pool", "info", pool])?;
    let t = table(&String::from_utf8_lossy(&out), "\u{0}");
    let driver = t
        .get("driver")
        .cloned()
        .with_context(|| format!("qvm-pool info {pool}: no driver in its output"))?;
    Ok(PoolInfo {
        name: pool.into(),
        driver,
        volume_group: t.get("volume_group").cloned(),
        thin_pool: t.get("thin_pool").cloned(),
        dir_path: t.get("dir_path").cloned(),
    })
}

/// `qvm-check --running QUBE`: exit 0 when running, 1 when not
/// (qvm_check.py: `return 0 if running else 1` for `--running`).
pub fn is_running(qvm: &dyn QvmTools, qube: &str) -> Result<bool> {
    check_qube_name(qube)?;
    qvm.ask(&["qvm-check", "--running", qube])
}

/// The properties a qube has set (not at their default), from
/// `qvm-prefs --hide-default QUBE`. qvm_prefs.py `process_actions` prints
/// `'{name:{width}s}  -  {value!s}'` for each, `U` for unavailable ones.
pub fn prefs(qvm: &dyn QvmTools, qube: &str) -> Result<Vec<(String, String)>> {
    check_qube_name(qube)?;
    let out = qvm.run(&["qvm-prefs", "--hide-default", qube])?;
    let text = String::from_utf8(out).context("qvm-prefs printed something that is not UTF-8")?;
    let mut props = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim_start();
        if rest == "U" {
            continue;
        }
        let Some(value) = rest.strip_prefix('-') else {
            bail!("qvm-prefs --hide-default {qube} printed {line:?}");
        };
        let value = value.strip_prefix("  ").unwrap_or(value.trim_start());
        props.push((name.to_string(), value.to_string()));
    }
    Ok(props)
}

/// `qvm-features QUBE`: qvm_features.py prints
/// `'{name:{width}s}  {value}'` for each feature.
pub fn features(qvm: &dyn QvmTools, qube: &str) -> Result<Vec<(String, String)>> {
    check_qube_name(qube)?;
    let out = qvm.run(&["qvm-features", qube])?;
    let text =
        String::from_utf8(out).context("qvm-features printed something that is not UTF-8")?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_string(), v.trim().to_string())
        })
        .collect())
}

/// `qvm-tags QUBE list`: one tag per line (qvm_tags.py `list`).
pub fn tags(qvm: &dyn QvmTools, qube: &str) -> Result<Vec<String>> {
    check_qube_name(qube)?;
    let out = qvm.run(&["qvm-tags", qube, "list"])?;
    let text = String::from_utf8(out).context("qvm-tags printed something that is not UTF-8")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// `qvm-firewall --raw QUBE list`: qvm_firewall.py `rules_list_raw` writes
/// `rule.rule + '\n'` per rule, the Admin API form
/// (`action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443`).
pub fn firewall(qvm: &dyn QvmTools, qube: &str) -> Result<Vec<String>> {
    check_qube_name(qube)?;
    let out = qvm.run(&["qvm-firewall", "--raw", qube, "list"])?;
    let text =
        String::from_utf8(out).context("qvm-firewall printed something that is not UTF-8")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines() {
        let q = parse_ls_line("work|AppVM|Running|0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70|fedora-41")
            .unwrap();
        assert_eq!(q.template.as_deref(), Some("fedora-41"));
        let t = parse_ls_line("fedora-41|TemplateVM|Halted|0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f71|-")
            .unwrap();
        assert!(t.template.is_none() && t.halted());
        for bad in [
            "work|AppVM|Running|not-a-uuid|-",
            "-x|AppVM|Running|0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70|-",
            "work|AppVM|Running|0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70",
            "work|App VM|Running|0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70|-",
        ] {
            assert!(parse_ls_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_tables() {
        let text = "pool               vm-pool\nvid                qubes_dom0/vm-work-private\n\
                    rw                 True\nsource\nsave_on_stop       True\n\
                    snap_on_start      False\nsize               2147483648\nusage              1024\n\
                    revisions_to_keep  2\nis_outdated        False\n\
                    Available revisions (for revert):\n  1700000000-back\n";
        let v = parse_volume_info(&table(text, "Available revisions")).unwrap();
        assert_eq!(v.vid, "qubes_dom0/vm-work-private");
        assert!(v.save_on_stop && !v.snap_on_start);
        assert_eq!((v.revisions_to_keep, v.size), (2, 2147483648));
        let broken = text.replace("save_on_stop       True", "save_on_stop       Yes");
        assert!(parse_volume_info(&table(&broken, "Available revisions")).is_err());
    }
}
