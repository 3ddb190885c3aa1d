//! Qubes OS as the unit of backup: which volumes make up a qube, what is
//! needed to recreate it, and the dom0 tools (`qvm-*`) that tell us.
//!
//! Every question goes to Qubes' own command-line tools through
//! [`QvmTools`] (one wrapper, [`crate::process`], never a shell), and every
//! answer is parsed strictly: names are validated with Qubes' own rules
//! before they reach an argument list. The one file read directly is
//! dom0's `qubes.xml`, for device assignments only ([`devices`]).
//!
//! * [`query`]: parsing the tools' output (`qvm-ls --raw-data`,
//!   `qvm-volume info`, `qvm-pool info`, `qvm-prefs`, `qvm-features`,
//!   `qvm-tags`, `qvm-firewall --raw`);
//! * [`map`]: which of a qube's volumes are backed up, and which qubes are
//!   refused (another pool than the archive's, snapshots disabled while
//!   running); a `file-reflink` pool maps to its images (crate::reflink);
//! * [`devices`]: a qube's persistent device assignments, from qubes.xml;
//! * [`record`]: the qube settings record stored beside the data
//!   (docs/FORMAT.md §16), validated strictly when it comes back.

pub mod devices;
pub mod export;
pub mod map;
pub mod query;
pub mod record;

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// Largest output read from one `qvm-*` call.
pub const MAX_TOOL_OUTPUT: u64 = 4 << 20;

/// Runs Qubes' dom0 tools. `argv[0]` is the tool's name (`qvm-ls`, …).
pub trait QvmTools {
    /// Run and return stdout; a non-zero exit is an error naming the
    /// command and quoting its stderr.
    fn run(&self, argv: &[&str]) -> Result<Vec<u8>>;
    /// Run a yes/no question (`qvm-check --running`): exit 0 is yes, 1 is
    /// no, anything else an error.
    fn ask(&self, argv: &[&str]) -> Result<bool>;
    /// The bytes of dom0's qubes.xml (at most [`devices::MAX_QUBES_XML`]).
    fn qubes_xml(&self) -> Result<Vec<u8>>;
}

/// The real tools, found on `PATH` (or in `dir`, with extra environment:
/// how the test suites point at their stand-ins without touching the
/// process's own environment).
#[derive(Clone, Debug, Default)]
pub struct QvmCli {
    pub dir: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    /// qubes.xml; without it `$SPARSEBAK_QUBES_XML` (the test suites'
    /// stand-in state), else [`devices::QUBES_XML`].
    pub qubes_xml: Option<PathBuf>,
}

impl QvmCli {
    fn command(&self, argv: &[&str]) -> Result<Command> {
        let Some((tool, args)) = argv.split_first() else {
            bail!("no qvm tool named");
        };
        if !tool.starts_with("qvm-") || tool.contains('/') {
            bail!("{tool:?} is not a qvm tool");
        }
        let mut c = Command::new(match &self.dir {
            Some(d) => d.join(tool),
            None => PathBuf::from(tool),
        });
        c.args(args).envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(c)
    }
}

impl QvmTools for QvmCli {
    fn run(&self, argv: &[&str]) -> Result<Vec<u8>> {
        crate::process::run(&mut self.command(argv)?, MAX_TOOL_OUTPUT)
    }
    fn ask(&self, argv: &[&str]) -> Result<bool> {
        match crate::process::run_code(&mut self.command(argv)?, MAX_TOOL_OUTPUT)? {
            (0, _) => Ok(true),
            (1, _) => Ok(false),
            (code, err) => bail!("{} failed (exit code {code}): {err}", argv.join(" ")),
        }
    }
    fn qubes_xml(&self) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self
            .qubes_xml
            .clone()
            .or_else(|| std::env::var_os("SPARSEBAK_QUBES_XML").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(devices::QUBES_XML));
        let f = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut v = Vec::new();
        f.take(devices::MAX_QUBES_XML + 1)
            .read_to_end(&mut v)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if v.len() as u64 > devices::MAX_QUBES_XML {
            bail!(
                "{} is larger than {} bytes",
                path.display(),
                devices::MAX_QUBES_XML
            );
        }
        Ok(v)
    }
}

/// A qube's name, checked with Qubes' rule (qubes-core-admin
/// `qubes/vm/__init__.py` `validate_name`): a letter, then letters,
/// digits, `_`, `.` or `-`; at most 31 characters; not `none` or
/// `default`, not ending in `-dm` (Qubes reserves those for stubdomains).
/// The first letter also keeps a name from reading as an option.
pub fn check_qube_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !matches!(name, "none" | "default")
        && !name.ends_with("-dm")
        && name != "."
        && name != "..";
    if !ok {
        bail!("{name:?} is not a valid qube name");
    }
    Ok(())
}

/// A qube's uuid as Qubes prints it: 36 lowercase hex digits and dashes.
pub fn check_uuid(u: &str) -> Result<()> {
    let b = u.as_bytes();
    let ok = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        });
    if !ok {
        bail!("{u:?} is not a qube uuid");
    }
    Ok(())
}

/// The archive volume holding volume `volume` (`private`, `root`) of the
/// qube whose uuid is `id`, or its settings record (`settings`).
pub fn archive_volume(id: &str, volume: &str) -> String {
    format!("qube.{id}.{volume}")
}

/// The uuid and part (`private`, `root`, `settings`) of an archive volume
/// named by [`archive_volume`].
pub fn split_archive_volume(vol: &str) -> Option<(&str, &str)> {
    let rest = vol.strip_prefix("qube.")?;
    let (id, part) = rest.split_once('.')?;
    check_uuid(id).ok()?;
    matches!(part, "private" | "root" | "settings").then_some((id, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_qubes_rules() {
        for ok in ["work", "sys-net", "fedora-41", "a", "Work_2.b"] {
            check_qube_name(ok).unwrap();
        }
        let long = "a".repeat(32);
        for bad in [
            "", "-x", "1abc", "a b", "a/b", "none", "a$b", "a\nb", "x-dm", &long,
        ] {
            assert!(check_qube_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuids_and_archive_names() {
        let u = "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70";
        check_uuid(u).unwrap();
        for bad in ["", "0B0E6D9A-4C1F-4A7E-9F7E-2B3C4D5E6F70", &u[1..], "../x"] {
            assert!(check_uuid(bad).is_err(), "{bad:?}");
        }
        let v = archive_volume(u, "private");
        assert_eq!(split_archive_volume(&v), Some((u, "private")));
        assert_eq!(split_archive_volume("qube.x.private"), None);
        assert_eq!(split_archive_volume(&archive_volume(u, "volatile")), None);
        sparsebak_common::names::VolName::new(&archive_volume(u, "settings")).unwrap();
    }
}
