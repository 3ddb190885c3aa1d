//! The qube settings record (docs/FORMAT.md §16): what is needed to
//! recreate a qube, stored with each send of it as the small archive
//! volume `qube.<uuid>.settings`, so it is chunked, hashed and checked on
//! restore like any other data.
//!
//! It comes back from an untrusted destination, so [`QubeRecord::parse`]
//! bounds its size before reading, refuses unknown fields, and checks
//! every name and value with the rules the restore relies on: qube names
//! with Qubes' rule, no control characters (a newline could not be
//! passed to a tool as one value), bounded lengths and counts. Values are
//! only ever passed as single arguments to `qvm-*` tools, never to a
//! shell, so shell metacharacters in them are inert.

use super::map::volumes_of;
use super::{archive_volume, check_qube_name, check_uuid};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sparsebak_common::names::SessionName;

pub const FORMAT: &str = "sparsebak-qube-settings";
pub const VERSION: u32 = 1;
/// The largest record read back (and written).
pub const MAX_RECORD: u64 = 256 * 1024;
const MAX_VALUE: usize = 4096;
const MAX_ITEMS: usize = 1024;

/// Properties whose value names another qube. A restore leaves one at its
/// default, with a warning, when that qube does not exist.
pub const QUBE_PROPERTIES: &[&str] = &[
    "netvm",
    "template",
    "default_dispvm",
    "management_dispvm",
    "guivm",
    "audiovm",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QubeRecord {
    pub format: String,
    pub version: u32,
    /// The uuid the qube's archive volumes are named after.
    pub uuid: String,
    pub name: String,
    pub class: String,
    pub template: Option<String>,
    pub label: String,
    /// Properties not at their default (`qvm-prefs --hide-default`).
    pub properties: Vec<(String, String)>,
    pub features: Vec<(String, String)>,
    pub tags: Vec<String>,
    /// Firewall rules in the Admin API form (`qvm-firewall --raw`).
    pub firewall: Vec<String>,
    pub devices: Vec<DeviceAssignment>,
    /// The data sessions this record goes with.
    pub volumes: Vec<RecordVolume>,
    pub created_utc: String,
}

/// A persistent device assignment, as qubes.xml holds it
/// ([`super::devices`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAssignment {
    /// `pci`, `block`, `usb`, …
    pub class: String,
    /// `BACKEND:PORT`, e.g. `dom0:00_14.0`.
    pub device: String,
    /// The device's identity (R4.3; `*`: any device in the port); none
    /// from R4.2, which assigns ports only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `required`, `auto-attach` or `ask-to-attach`.
    pub mode: String,
    pub options: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordVolume {
    /// `private` or `root`.
    pub volume: String,
    /// The archive volume holding it.
    pub archive: String,
    /// Its session that goes with this record.
    pub session: String,
    pub size: u64,
}

impl QubeRecord {
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut v = serde_json::to_vec_pretty(self)?;
        v.push(b'\n');
        if v.len() as u64 > MAX_RECORD {
            bail!(
                "the settings of qube {} take {} bytes, more than the {MAX_RECORD} a record may hold",
                self.name,
                v.len()
            );
        }
        Ok(v)
    }

    /// Read a record that came back from the archive: bounded, strict,
    /// every field checked.
    pub fn parse(bytes: &[u8]) -> Result<QubeRecord> {
        if bytes.len() as u64 > MAX_RECORD {
            bail!(
                "settings record of {} bytes is larger than {MAX_RECORD}",
                bytes.len()
            );
        }
        let r: QubeRecord =
            serde_json::from_slice(bytes).context("settings record is not a valid record")?;
        r.validate()?;
        Ok(r)
    }

    pub fn validate(&self) -> Result<()> {
        if self.format != FORMAT || self.version != VERSION {
            bail!(
                "settings record has format {:?} version {}, this sparsebak reads {FORMAT} {VERSION}",
                self.format,
                self.version
            );
        }
        check_uuid(&self.uuid)?;
        check_qube_name(&self.name)?;
        self.check_class()?;
        check_word("label", &self.label, 64)?;
        check_pairs("property", &self.properties, 256, |k| is_ident(k, 64))?;
        check_pairs("feature", &self.features, MAX_ITEMS, |k| {
            is_word(k, 128, b"_.+-")
        })?;
        check_count("tags", self.tags.len(), MAX_ITEMS)?;
        for t in &self.tags {
            check_word("tag", t, 64)?;
        }
        check_count("firewall rules", self.firewall.len(), MAX_ITEMS)?;
        for r in &self.firewall {
            check_rule(r)?;
        }
        check_count("devices", self.devices.len(), 256)?;
        for d in &self.devices {
            d.validate()?;
        }
        self.check_volumes()?;
        if !is_utc(&self.created_utc) {
            bail!("settings record has created_utc {:?}", self.created_utc);
        }
        Ok(())
    }

    fn check_class(&self) -> Result<()> {
        match (self.class.as_str(), &self.template) {
            ("AppVM", Some(t)) => check_qube_name(t).context("template"),
            ("AppVM", None) => bail!("settings record of AppVM {} names no template", self.name),
            ("TemplateVM" | "StandaloneVM", None) => Ok(()),
            ("TemplateVM" | "StandaloneVM", Some(_)) => {
                bail!(
                    "settings record of {} {} names a template",
                    self.class,
                    self.name
                )
            }
            (c, _) => bail!("settings record has class {c:?}"),
        }
    }

    fn check_volumes(&self) -> Result<()> {
        let want = volumes_of(&self.class);
        let got: Vec<&str> = self.volumes.iter().map(|v| v.volume.as_str()).collect();
        if got != want {
            bail!(
                "settings record of {} {} lists volumes {got:?}, expected {want:?}",
                self.class,
                self.name
            );
        }
        for v in &self.volumes {
            if v.archive != archive_volume(&self.uuid, &v.volume) {
                bail!(
                    "settings record names archive volume {:?} for {}",
                    v.archive,
                    v.volume
                );
            }
            SessionName::new(&v.session)
                .with_context(|| format!("session {:?} of {}", v.session, v.volume))?;
            if v.size == 0 || v.size > 1 << 50 {
                bail!(
                    "settings record gives {} a size of {} bytes",
                    v.volume,
                    v.size
                );
            }
        }
        Ok(())
    }

    /// A property's value, if set.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl DeviceAssignment {
    /// The backend qube and the port.
    pub fn backend_port(&self) -> (&str, &str) {
        self.device.split_once(':').unwrap_or((&self.device, ""))
    }

    /// The checks of docs/FORMAT.md §16.3: every part a plain word, so a
    /// value can neither read as an option nor carry shell syntax.
    pub fn validate(&self) -> Result<()> {
        if !is_word(&self.class, 16, b"") {
            bail!("device class {:?}", self.class);
        }
        let (backend, port) = self
            .device
            .split_once(':')
            .with_context(|| format!("device {:?} is not BACKEND:PORT", self.device))?;
        check_qube_name(backend).with_context(|| format!("device {:?}", self.device))?;
        if !is_word(port, 64, b"_.:*-") {
            bail!("device {:?} has port {port:?}", self.device);
        }
        if let Some(id) = &self.identity {
            if !is_word(id, 256, b"_.:*+-") {
                bail!("device {} has identity {id:?}", self.device);
            }
        }
        if !matches!(
            self.mode.as_str(),
            "required" | "auto-attach" | "ask-to-attach"
        ) {
            bail!("device {} has mode {:?}", self.device, self.mode);
        }
        check_pairs("device option", &self.options, 32, |k| {
            is_word(k, 64, b"_-")
        })?;
        for (k, v) in &self.options {
            if !is_word(v, 256, b"_.:/-") {
                bail!("device {} has option {k}={v:?}", self.device);
            }
        }
        Ok(())
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_utc(s: &str) -> bool {
    s.len() == 20
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

fn check_count(what: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        bail!("settings record has {n} {what}, more than {max}");
    }
    Ok(())
}

/// Letters, digits and `extra`, not starting with `-`.
fn is_word(s: &str, max: usize, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// A property name: `[a-z_][a-z0-9_]*`.
fn is_ident(s: &str, max: usize) -> bool {
    is_word(s, max, b"_")
        && !s.as_bytes()[0].is_ascii_digit()
        && !s.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_word(what: &str, s: &str, max: usize) -> Result<()> {
    if !is_word(s, max, b"_-") {
        bail!("settings record has {what} {s:?}");
    }
    Ok(())
}

/// A value passed as one argument: bounded, printable (no newline, no
/// other control character), not read as an option.
pub fn check_value(what: &str, v: &str) -> Result<()> {
    if v.len() > MAX_VALUE {
        bail!(
            "{what} has a value of {} bytes, more than {MAX_VALUE}",
            v.len()
        );
    }
    if v.chars().any(char::is_control) {
        bail!("{what} has a value with a control character (newline, tab, …): {v:?}");
    }
    if v.starts_with('-') {
        bail!("{what} has a value starting with '-': {v:?}");
    }
    Ok(())
}

fn check_pairs(
    what: &str,
    pairs: &[(String, String)],
    max: usize,
    name_ok: impl Fn(&str) -> bool,
) -> Result<()> {
    check_count(what, pairs.len(), max)?;
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in pairs {
        if !name_ok(k) {
            bail!("settings record has {what} name {k:?}");
        }
        if !seen.insert(k) {
            bail!("settings record has {what} {k} twice");
        }
        check_value(&format!("{what} {k}"), v)?;
    }
    Ok(())
}

/// Admin API firewall rule: `key=value` tokens separated by one space;
/// `comment=` last, the only value that may hold spaces.
fn check_rule(rule: &str) -> Result<()> {
    const KEYS: &[&str] = &[
        "action",
        "dsthost",
        "dst4",
        "dst6",
        "proto",
        "dstports",
        "icmptype",
        "specialtarget",
        "expire",
    ];
    if rule.len() > 1024 || rule.chars().any(char::is_control) {
        bail!("firewall rule {rule:?} is too long or holds a control character");
    }
    let (head, comment) = match rule.split_once("comment=") {
        Some((h, c)) => (h, Some(c)),
        None => (rule, None),
    };
    if comment.is_some_and(|c| c.contains('=')) {
        bail!("firewall rule {rule:?}: a comment may not contain '='");
    }
    let mut action = false;
    for tok in head.split(' ').filter(|t| !t.is_empty()) {
        let Some((k, v)) = tok.split_once('=') else {
            bail!("firewall rule {rule:?}: {tok:?} is not key=value");
        };
        if !KEYS.contains(&k) || v.is_empty() || !is_word(v, 256, b"_.:/-") {
            bail!("firewall rule {rule:?}: {tok:?}");
        }
        if k == "action" {
            if !matches!(v, "accept" | "drop") {
                bail!("firewall rule {rule:?}: action {v:?}");
            }
            action = true;
        }
    }
    if !action {
        bail!("firewall rule {rule:?} has no action");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
