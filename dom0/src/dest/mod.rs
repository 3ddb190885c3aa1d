//! Destinations. Every destination is a byte pipe to a `sparsebak-agent`;
//! this module parses `--dest` and starts the pipe.

pub mod client;
pub mod hidden;
pub mod link;
pub mod transport;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use client::AgentConn;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DestKind {
    /// The agent runs on this machine.
    Internal,
    /// `ssh://[user@]host[:port]/path`
    Ssh { target: String, port: Option<u16> },
    /// `qubes://vm/path`, through qrexec service qubes.SparsebakStore.
    Qubes { vm: String },
    /// `qubes-ssh://vm|[user@]host[:port]/path`, relayed by the VM over ssh.
    QubesSsh {
        vm: String,
        target: String,
        port: Option<u16>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    #[serde(flatten)]
    pub kind: DestKind,
    /// The mounted file system the archive must live on, or `s3:NAME`: the
    /// object store the agent's store configuration NAME describes
    /// (docs/FORMAT.md §21; [`STORE_PREFIX`]).
    pub mountpoint: String,
    /// Relative directory under the mountpoint ("" for the mountpoint itself).
    pub subdir: String,
}

/// In place of a mountpoint, `s3:NAME` names an object store the agent
/// knows by its store configuration NAME (where the agent runs; nothing
/// about the store but its name is in dom0).
pub const STORE_PREFIX: &str = "s3:";

fn bad(dest: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "malformed --dest {dest:?}: {why}; expected internal:/MOUNTPOINT, ssh://[user@]host[:port]/MOUNTPOINT, \
         qubes://VM/MOUNTPOINT or qubes-ssh://VM|[user@]host[:port]/MOUNTPOINT, \
         with s3:STORE in place of /MOUNTPOINT for an object store"
    )
}

/// `s3:NAME`, if `p` is one: NAME is 1-64 of `A-Za-z0-9_-`, starting with
/// a letter or digit (the agent reads `NAME.conf`).
fn store_spelling(p: &str, dest: &str) -> Option<Result<String>> {
    let name = p.strip_prefix(STORE_PREFIX)?;
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    Some(if ok {
        Ok(p.to_string())
    } else {
        Err(bad(
            dest,
            &format!("{name:?} is not a valid store name (1-64 of A-Za-z0-9_-)"),
        ))
    })
}

/// The place after the destination's system: a store or a mountpoint.
fn place(p: &str, dest: &str) -> Result<String> {
    match store_spelling(p.strip_prefix('/').unwrap_or(p), dest) {
        Some(store) => store,
        None => clean_path(p, "the mountpoint", dest),
    }
}

fn valid_vm(vm: &str) -> bool {
    vm.len() <= 31
        && vm.starts_with(|c: char| c.is_ascii_alphabetic())
        && vm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// `[user@]host[:port]`; nothing that ssh could take for an option.
fn parse_target(dest: &str, s: &str) -> Result<(String, Option<u16>)> {
    let (target, port) = match s.rsplit_once(':') {
        Some((t, p)) => (
            t,
            Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(dest, "bad port"))?,
            ),
        ),
        None => (s, None),
    };
    let ok = !target.is_empty()
        && !target.starts_with('-')
        && !target.starts_with('@')
        && !target.ends_with('@')
        && target.matches('@').count() <= 1
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !ok {
        return Err(bad(dest, &format!("{target:?} is not a valid [user@]host")));
    }
    Ok((target.to_string(), port))
}

/// An absolute path without `.`/`..`, normalised.
fn clean_path(p: &str, what: &str, dest: &str) -> Result<String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(bad(dest, &format!("{what} must be an absolute path")));
    }
    if p.split('/').any(|c| c == "." || c == "..") || p.contains('\0') {
        return Err(bad(dest, &format!("{what} must not contain '.' or '..'")));
    }
    Ok(path
        .components()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned())
}

/// `--subdir`: relative, no `..`, no empty or absolute components.
pub fn clean_subdir(s: &str) -> Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let p = Path::new(s);
    if p.is_absolute() {
        bail!("--subdir {s:?} must be relative to the mountpoint");
    }
    let s = s.trim_end_matches('/');
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") || s.contains('\0') {
        bail!("--subdir {s:?} must not contain '.' or '..'");
    }
    Ok(p.components()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned())
}

impl DestSpec {
    pub fn parse(dest: &str, subdir: &str) -> Result<DestSpec> {
        let subdir = clean_subdir(subdir)?;
        if let Some(rest) = dest.strip_prefix("internal:") {
            let mountpoint = match store_spelling(rest, dest) {
                Some(store) => store?,
                None => clean_path(rest, "the mountpoint", dest)?,
            };
            return Ok(DestSpec {
                kind: DestKind::Internal,
                mountpoint,
                subdir,
            });
        }
        let (scheme, rest) = dest
            .split_once("://")
            .ok_or_else(|| bad(dest, "unknown destination type"))?;
        let slash = rest
            .find('/')
            .ok_or_else(|| bad(dest, "no mountpoint path"))?;
        let (sys, path) = rest.split_at(slash);
        let mountpoint = place(path, dest)?;
        let kind = match scheme {
            "ssh" => {
                let (target, port) = parse_target(dest, sys)?;
                DestKind::Ssh { target, port }
            }
            "qubes" => {
                if !valid_vm(sys) {
                    return Err(bad(dest, &format!("{sys:?} is not a valid VM name")));
                }
                DestKind::Qubes { vm: sys.into() }
            }
            "qubes-ssh" => {
                let (vm, t) = sys
                    .split_once('|')
                    .ok_or_else(|| bad(dest, "expected VM|[user@]host"))?;
                if !valid_vm(vm) {
                    return Err(bad(dest, &format!("{vm:?} is not a valid VM name")));
                }
                let (target, port) = parse_target(dest, t)?;
                DestKind::QubesSsh {
                    vm: vm.into(),
                    target,
                    port,
                }
            }
            _ => return Err(bad(dest, &format!("unknown destination type {scheme:?}"))),
        };
        Ok(DestSpec {
            kind,
            mountpoint,
            subdir,
        })
    }

    /// An object store (`s3:NAME`), not a mounted file system.
    pub fn is_store(&self) -> bool {
        self.mountpoint.starts_with(STORE_PREFIX)
    }

    /// Absolute path of the directory that holds `sparsebak/`; for a store,
    /// `s3:NAME` or `s3:NAME/SUBDIR` (the subdir extends the store's prefix).
    pub fn dest_path(&self) -> String {
        if self.is_store() && !self.subdir.is_empty() {
            format!("{}/{}", self.mountpoint, self.subdir)
        } else if self.subdir.is_empty() {
            self.mountpoint.clone()
        } else {
            Path::new(&self.mountpoint)
                .join(&self.subdir)
                .to_string_lossy()
                .into_owned()
        }
    }

    pub fn describe(&self) -> String {
        let sys = match &self.kind {
            DestKind::Internal => "internal:".to_string(),
            DestKind::Ssh { target, port } => format!(
                "ssh://{target}{}",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            DestKind::Qubes { vm } => format!("qubes://{vm}"),
            DestKind::QubesSsh { vm, target, port } => {
                format!(
                    "qubes-ssh://{vm}|{target}{}",
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                )
            }
        };
        let sep = if self.is_store() && self.kind != DestKind::Internal {
            "/"
        } else {
            ""
        };
        format!("{sys}{sep}{}", self.dest_path())
    }
}

/// How to reach agents; tests point these at stand-ins.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// The local agent binary for `internal:`.
    pub agent: PathBuf,
    /// The ssh client for `ssh://` (`SPARSEBAK_SSH`, default `ssh` on PATH).
    pub ssh: PathBuf,
    /// dom0's qrexec client for `qubes://` and `qubes-ssh://`
    /// (`SPARSEBAK_QREXEC_CLIENT`, default `/usr/lib/qubes/qrexec-client`).
    pub qrexec_client: PathBuf,
    /// Starts a halted VM first (`SPARSEBAK_QVM_START`, default `qvm-start`;
    /// set to the empty string to skip).
    pub qvm_start: Option<PathBuf>,
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

impl TransportOptions {
    /// `SPARSEBAK_AGENT`, else `sparsebak-agent` beside this executable, else
    /// PATH; the other programs from their `SPARSEBAK_*` variables.
    pub fn from_env() -> Self {
        let agent = std::env::var_os("SPARSEBAK_AGENT")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|d| d.join("sparsebak-agent")))
                    .filter(|p| p.exists())
                    .unwrap_or_else(|| PathBuf::from("sparsebak-agent"))
            });
        let qvm_start = match std::env::var_os("SPARSEBAK_QVM_START") {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(PathBuf::from("qvm-start")),
        };
        TransportOptions {
            agent,
            ssh: env_path("SPARSEBAK_SSH", "ssh"),
            qrexec_client: env_path("SPARSEBAK_QREXEC_CLIENT", "/usr/lib/qubes/qrexec-client"),
            qvm_start,
        }
    }
}

/// Is `program` there to run (an existing path, or a name found on PATH)?
fn runnable(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `qvm-start --skip-if-running VM`, through the one runner of short commands.
fn start_vm(spec: &DestSpec, program: &Path, args: &[String]) -> Result<()> {
    let vm = match &spec.kind {
        DestKind::Qubes { vm } | DestKind::QubesSsh { vm, .. } => vm.as_str(),
        _ => "",
    };
    let what = format!("cannot start VM {vm} for {}", spec.describe());
    if !runnable(program) {
        bail!(
            "{what}: {} is not installed; qubes:// destinations work only in Qubes OS dom0 \
             (SPARSEBAK_QVM_START overrides; empty skips starting the VM)",
            program.display()
        );
    }
    crate::process::run(Command::new(program).args(args), 64 * 1024).context(what)?;
    Ok(())
}

/// Start the pipe to the destination's agent and say Hello: the single
/// entry point for every destination kind.
pub fn connect(spec: &DestSpec, opts: &TransportOptions) -> Result<AgentConn> {
    let plan = transport::plan(spec, opts);
    if let Some((program, args)) = &plan.before {
        start_vm(spec, program, args)?;
    }
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    let (link, stdin, stdout) = link::Link::spawn(cmd).map_err(|e| {
        anyhow!(
            "cannot run {} for {}: {e}; {}",
            plan.program.display(),
            spec.describe(),
            plan.via.spawn_hint()
        )
    })?;
    log::debug!(
        "started {} (pid {}) for {}",
        plan.program.display(),
        link.id(),
        spec.describe()
    );
    let mut conn = AgentConn::over_link(
        link,
        plan.via,
        stdin,
        stdout,
        plan.preamble.as_deref(),
        spec.describe(),
    )?;
    if spec.is_store() {
        // A killed agent would hold the store's lease until it runs out.
        conn.linger_on_drop(std::time::Duration::from_secs(10));
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let d = DestSpec::parse("internal:/mnt/bk/", "a/b").unwrap();
        assert_eq!(
            (d.kind.clone(), d.mountpoint.as_str(), d.dest_path()),
            (DestKind::Internal, "/mnt/bk", "/mnt/bk/a/b".into())
        );
        let d = DestSpec::parse("ssh://backup@nas:2222/srv", "").unwrap();
        assert_eq!(
            d.kind,
            DestKind::Ssh {
                target: "backup@nas".into(),
                port: Some(2222)
            }
        );
        let d = DestSpec::parse("qubes://sys-backup/mnt/usb", "").unwrap();
        assert_eq!(
            d.kind,
            DestKind::Qubes {
                vm: "sys-backup".into()
            }
        );
        let d = DestSpec::parse("qubes-ssh://sys-net|me@host/mnt", "").unwrap();
        assert_eq!(
            d.kind,
            DestKind::QubesSsh {
                vm: "sys-net".into(),
                target: "me@host".into(),
                port: None
            }
        );
        assert_eq!(d.describe(), "qubes-ssh://sys-net|me@host/mnt");
    }

    #[test]
    fn parses_object_stores() {
        let d = DestSpec::parse("internal:s3:nas-1", "").unwrap();
        assert!(d.is_store());
        assert_eq!(
            (d.kind.clone(), d.dest_path(), d.describe()),
            (
                DestKind::Internal,
                "s3:nas-1".into(),
                "internal:s3:nas-1".into()
            )
        );
        let d = DestSpec::parse("qubes://sys-backup/s3:cloud", "laptop/a").unwrap();
        assert_eq!(d.mountpoint, "s3:cloud");
        assert_eq!(d.dest_path(), "s3:cloud/laptop/a");
        assert_eq!(d.describe(), "qubes://sys-backup/s3:cloud/laptop/a");
        let d = DestSpec::parse("ssh://me@nas:2222/s3:x", "").unwrap();
        assert_eq!(d.describe(), "ssh://me@nas:2222/s3:x");
        assert!(!DestSpec::parse("internal:/mnt/s3:x", "")
            .unwrap()
            .is_store());
        for bad in [
            "internal:s3:",
            "internal:s3:a/b",
            "internal:s3:-x",
            "internal:s3:a b",
            "qubes://vm/s3:../x",
            "ssh://h/s3:x.y",
        ] {
            assert!(DestSpec::parse(bad, "").is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for (dest, sub) in [
            ("/mnt/bk", ""),
            ("internal:mnt", ""),
            ("internal:/mnt/../etc", ""),
            ("ftp://x/y", ""),
            ("ssh://host", ""),
            ("ssh:///mnt", ""),
            ("ssh://-oProxyCommand=x/mnt", ""),
            ("ssh://a;b/mnt", ""),
            ("ssh://host:0/mnt", ""),
            ("ssh://host:99999/mnt", ""),
            ("qubes://1vm/mnt", ""),
            ("qubes://v$m/mnt", ""),
            ("qubes-ssh://vm/mnt", ""),
            ("qubes-ssh://|host/mnt", ""),
            ("internal:/mnt", "/abs"),
            ("internal:/mnt", "../up"),
            ("internal:/mnt", "a/./b"),
        ] {
            assert!(DestSpec::parse(dest, sub).is_err(), "{dest} {sub}");
        }
    }
}
