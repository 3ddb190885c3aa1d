//! A store configuration: what `s3:NAME` in `--dest` means where the agent
//! runs (docs/FORMAT.md §21.8). dom0 knows only NAME; the endpoint, bucket,
//! prefix and the keys' whereabouts live in `NAME.conf` beside the agent,
//! found in the first of: `$SPARSEBAK_STORE_DIR`,
//! `$XDG_CONFIG_HOME/sparsebak/stores` (else `~/.config/sparsebak/stores`),
//! `/etc/sparsebak/stores`.
//!
//! The file is `key = value` lines (`#` starts a comment):
//! `endpoint` (`http[s]://host[:port]`, required), `bucket` (required),
//! `region` (default `us-east-1`), `prefix` (default none), `credentials`
//! (an AWS shared-credentials file; default: the AWS environment and
//! `~/.aws/credentials`, crate::s3::creds), `ca_file`, `lease_secs`
//! (default 600), `pack_mib` (default 16, 1-64).

use crate::error::{AgentError, Result};
use crate::s3::lease::MAX_LEASE_SECS;
use std::path::{Path, PathBuf};

/// What stands for a mountpoint in `Open` when the archive is in a store.
pub const STORE_PREFIX: &str = "s3:";

/// Longest configuration file read.
const MAX_CONF: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConf {
    pub name: String,
    /// Where it was read, for messages.
    pub file: PathBuf,
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// `""` or `a/b/` (no leading slash, one trailing).
    pub prefix: String,
    pub credentials: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub lease_secs: u64,
    pub pack_bytes: usize,
}

/// A store name as dom0 checks it: 1-64 of `A-Za-z0-9_-`, not starting with `-` or `_`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AgentError::invalid(format!(
            "{name:?} is not a valid store name (1-64 of A-Za-z0-9_-)"
        )))
    }
}

/// The directories searched for `NAME.conf`, in order.
pub fn search_dirs() -> Vec<PathBuf> {
    let var = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    let mut dirs = Vec::new();
    if let Some(d) = var("SPARSEBAK_STORE_DIR") {
        dirs.push(PathBuf::from(d));
    }
    match (var("XDG_CONFIG_HOME"), var("HOME")) {
        (Some(x), _) => dirs.push(PathBuf::from(x).join("sparsebak/stores")),
        (None, Some(h)) => dirs.push(PathBuf::from(h).join(".config/sparsebak/stores")),
        _ => {}
    }
    dirs.push(PathBuf::from("/etc/sparsebak/stores"));
    dirs
}

/// Find and read store `name`'s configuration.
pub fn load(name: &str) -> Result<StoreConf> {
    check_name(name)?;
    let dirs = search_dirs();
    let file = dirs
        .iter()
        .map(|d| d.join(format!("{name}.conf")))
        .find(|f| f.is_file())
        .ok_or_else(|| {
            let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            AgentError::new(
                sparsebak_common::proto::ErrorKind::NotFound,
                format!(
                    "no configuration for store s3:{name} where the agent runs: write {name}.conf in one of {}",
                    looked.join(", ")
                ),
            )
        })?;
    let text = read_bounded(&file)?;
    parse(name, &file, &text).map_err(|e| AgentError::invalid(format!("{}: {e}", file.display())))
}

fn read_bounded(file: &Path) -> Result<String> {
    use std::io::Read;
    let mut buf = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CONF + 1).read_to_string(&mut buf))
        .map_err(|e| AgentError::io(format_args!("cannot read {}", file.display()), e))?;
    if buf.len() as u64 > MAX_CONF {
        return Err(AgentError::invalid(format!(
            "{} is larger than {MAX_CONF} bytes",
            file.display()
        )));
    }
    Ok(buf)
}

/// Parse a configuration's text; `Err` names the line or key at fault.
pub fn parse(name: &str, file: &Path, text: &str) -> std::result::Result<StoreConf, String> {
    let mut c = StoreConf {
        name: name.to_string(),
        file: file.to_path_buf(),
        endpoint: String::new(),
        bucket: String::new(),
        region: "us-east-1".into(),
        prefix: String::new(),
        credentials: None,
        ca_file: None,
        lease_secs: 600,
        pack_bytes: 16 << 20,
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
        set(&mut c, k.trim(), v.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
    }
    if c.endpoint.is_empty() || c.bucket.is_empty() {
        return Err("endpoint and bucket are required".into());
    }
    Ok(c)
}

fn set(c: &mut StoreConf, k: &str, v: &str) -> std::result::Result<(), String> {
    let num = |lo: u64, hi: u64| {
        v.parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{k} must be a number from {lo} to {hi}"))
    };
    match k {
        "endpoint" => {
            let rest = v
                .strip_prefix("http://")
                .or_else(|| v.strip_prefix("https://"))
                .ok_or("endpoint must start with http:// or https://")?;
            if rest.trim_end_matches('/').contains('/') || rest.is_empty() {
                return Err("endpoint must be scheme://host[:port] with nothing after it".into());
            }
            c.endpoint = v.trim_end_matches('/').to_string();
        }
        "bucket" => {
            let ok = (3..=63).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
            if !ok {
                return Err(format!("{v:?} is not a valid bucket name"));
            }
            c.bucket = v.to_string();
        }
        "region" if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            c.region = v.to_string()
        }
        "prefix" => c.prefix = clean_prefix(v)?,
        "credentials" => c.credentials = Some(abs(v, k)?),
        "ca_file" => c.ca_file = Some(abs(v, k)?),
        "lease_secs" => c.lease_secs = num(30, MAX_LEASE_SECS)?,
        "pack_mib" => c.pack_bytes = (num(1, 64)? as usize) << 20,
        _ => return Err(format!("unknown key or bad value: {k} = {v}")),
    }
    Ok(())
}

fn abs(v: &str, k: &str) -> std::result::Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err(format!("{k} must be an absolute path"))
    }
}

/// `a/b` → `a/b/`: components of `A-Za-z0-9._-`, none `.` or `..`.
pub fn clean_prefix(v: &str) -> std::result::Result<String, String> {
    let v = v.trim_matches('/');
    if v.is_empty() {
        return Ok(String::new());
    }
    let ok = v.len() <= 512
        && v.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !ok {
        return Err(format!(
            "prefix {v:?} must be /-separated names of A-Za-z0-9._- (no '.' or '..')"
        ));
    }
    Ok(format!("{v}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_refuses_bad_ones() {
        let f = Path::new("/x/nas.conf");
        let c = parse(
            "nas",
            f,
            "# NAS\nendpoint = http://10.0.0.5:7480/\nbucket = backups\nprefix = /laptop/\n\
             region = eu-1\ncredentials = /home/user/.nas-keys\nlease_secs = 120\npack_mib = 4\n",
        )
        .unwrap();
        assert_eq!(c.endpoint, "http://10.0.0.5:7480");
        assert_eq!(c.prefix, "laptop/");
        assert_eq!(c.pack_bytes, 4 << 20);
        assert_eq!(c.lease_secs, 120);
        for bad in [
            "bucket = b1x\n",
            "endpoint = ftp://x\nbucket = bbb\n",
            "endpoint = http://x/path\nbucket = bbb\n",
            "endpoint = http://x\nbucket = BB\n",
            "endpoint = http://x\nbucket = bbb\nprefix = a/../b\n",
            "endpoint = http://x\nbucket = bbb\ncredentials = rel\n",
            "endpoint = http://x\nbucket = bbb\nsecret_key = s\n",
            "endpoint = http://x\nbucket = bbb\npack_mib = 65\n",
            "endpoint http://x\n",
        ] {
            assert!(parse("n", f, bad).is_err(), "{bad}");
        }
        for bad in ["", "a/b", "-x", "a b", "..", "x.y"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
