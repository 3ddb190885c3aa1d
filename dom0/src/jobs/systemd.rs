//! `systemctl` behind a trait, so `schedule` and `status` can be tested
//! with a fake, and the directory drop-in files go to.

use crate::process;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub trait Systemctl {
    /// Run `systemctl ARGS`; its stdout.
    fn run(&self, args: &[&str]) -> Result<String>;
    /// Where administrators' drop-ins live (`/etc/systemd/system`).
    fn unit_dir(&self) -> &Path;
}

/// The real `systemctl` (`SPARSEBAK_SYSTEMCTL` names another program and
/// `SPARSEBAK_SYSTEMD_DIR` another unit dir, for the test suites).
pub struct RealSystemctl {
    pub program: PathBuf,
    pub unit_dir: PathBuf,
}

impl RealSystemctl {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| PathBuf::from(std::env::var_os(k).unwrap_or_else(|| d.into()));
        RealSystemctl {
            program: var("SPARSEBAK_SYSTEMCTL", "systemctl"),
            unit_dir: var("SPARSEBAK_SYSTEMD_DIR", "/etc/systemd/system"),
        }
    }
}

impl Systemctl for RealSystemctl {
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = process::run(Command::new(&self.program).args(args), 1 << 20)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    fn unit_dir(&self) -> &Path {
        &self.unit_dir
    }
}

/// `systemctl show -p A -p B UNIT` output (`KEY=VALUE` lines) as a map.
pub fn show(sc: &dyn Systemctl, unit: &str, props: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut args = vec!["show"];
    for p in props {
        args.extend(["-p", p]);
    }
    args.push(unit);
    let out = sc.run(&args)?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// A fake: records every call and answers `show` from `props`.
pub struct FakeSystemctl {
    pub dir: PathBuf,
    pub calls: std::sync::Mutex<Vec<String>>,
    pub props: BTreeMap<String, String>,
}

impl FakeSystemctl {
    pub fn new(dir: &Path) -> Self {
        FakeSystemctl {
            dir: dir.to_path_buf(),
            calls: Default::default(),
            props: BTreeMap::new(),
        }
    }
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Systemctl for FakeSystemctl {
    fn run(&self, args: &[&str]) -> Result<String> {
        self.calls.lock().unwrap().push(args.join(" "));
        if args.first() == Some(&"show") {
            return Ok(self
                .props
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect());
        }
        Ok(String::new())
    }
    fn unit_dir(&self) -> &Path {
        &self.dir
    }
}
