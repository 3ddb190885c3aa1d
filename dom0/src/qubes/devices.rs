//! A qube's persistent device assignments, read from dom0's own
//! `/var/lib/qubes/qubes.xml` (docs/FORMAT.md §16.1).
//!
//! Why the file and not `qvm-device CLASS list --assignments`: that table
//! puts the device's description, which the backend qube chooses (a USB
//! stick names itself), in the same `column -t` line as the assignment, so
//! no parser of it could tell a description such as `*work (required)`
//! from a real assignment. qubes.xml is written by qubesd alone; it is
//! still parsed strictly, and only the `<devices>` of the one `<domain>`
//! whose `uuid` property is the qube's are read.
//!
//! The element and attribute names are qubesd's (qubes-core-admin
//! `qubes/vm/__init__.py` `BaseVM.__xml__` and `load_extras`):
//!
//! ```xml
//! <domain id="domain-3" class="AppVM">
//!   <properties><property name="uuid">0b0e…</property>…</properties>
//!   <devices class="pci">
//!     <device backend-domain="dom0" id="00_14.0">
//!       <option name="no-strict-reset">True</option>
//!     </device>
//!   </devices>
//! </domain>
//! ```
//!
//! R4.2 writes `backend-domain`, `id` (the port) and `<option>`s; every
//! such assignment is persistent, i.e. `required`. R4.3 (device identity,
//! qubes-core-admin `doc/qubes-devices.rst`) adds the assignment's `mode`
//! (`required`, `auto-attach`, `ask-to-attach`) and the device's
//! `identity` (`*`: any device in that port). Any other attribute on a
//! `<device>` is refused, so an assignment is never recorded half-read.

use super::record::DeviceAssignment;
use anyhow::{anyhow, bail, Context, Result};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Where qubesd keeps its state.
pub const QUBES_XML: &str = "/var/lib/qubes/qubes.xml";
/// The largest qubes.xml read (a few hundred KiB for a hundred qubes).
pub const MAX_QUBES_XML: u64 = 64 << 20;
/// The largest text of one property or option read.
const MAX_TEXT: usize = 4096;

/// What was read for one qube: its assignments, and those left out (with
/// why), which the caller reports.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Assignments {
    pub devices: Vec<DeviceAssignment>,
    pub left_out: Vec<String>,
}

/// One `<device>` while it is read.
struct Pending {
    class: String,
    attrs: Vec<(String, String)>,
    options: Vec<(String, String)>,
}

#[derive(Default)]
struct Domain {
    uuid: Option<String>,
    devices: Vec<Result<DeviceAssignment>>,
}

/// The persistent device assignments of the qube whose uuid is `uuid`,
/// from the bytes of qubes.xml. A malformed document, or no such qube or
/// two of them, is an error; an assignment that does not pass the record's
/// checks is left out with the reason.
pub fn assignments(xml: &[u8], uuid: &str) -> Result<Assignments> {
    let domains = parse(xml).context("qubes.xml")?;
    let mut found = domains
        .into_iter()
        .filter(|d| d.uuid.as_deref() == Some(uuid));
    let Some(d) = found.next() else {
        bail!("qubes.xml has no qube with uuid {uuid}");
    };
    if found.next().is_some() {
        bail!("qubes.xml has two qubes with uuid {uuid}");
    }
    let mut out = Assignments::default();
    for r in d.devices {
        match r {
            Ok(a) => out.devices.push(a),
            Err(e) => out.left_out.push(format!("{e:#}")),
        }
    }
    Ok(out)
}

/// The element names from the root down to the current one.
type Path = Vec<String>;

fn parse(xml: &[u8]) -> Result<Vec<Domain>> {
    let mut rd = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut path: Path = Vec::new();
    let mut p = Parser::default();
    loop {
        let ev = rd
            .read_event_into(&mut buf)
            .map_err(|e| anyhow!("malformed XML at byte {}: {e}", rd.buffer_position()))?;
        match ev {
            Event::Start(e) => {
                p.open(&path, &e)?;
                path.push(name_of(&e)?);
            }
            Event::Empty(e) => {
                p.open(&path, &e)?;
                path.push(name_of(&e)?);
                p.close(&path)?;
                path.pop();
            }
            Event::End(_) => {
                p.close(&path)?;
                path.pop();
            }
            Event::Text(t) => {
                let t = t.unescape().map_err(|e| anyhow!("bad text: {e}"))?;
                p.text(&path, &t)?;
            }
            Event::CData(_) => bail!("unexpected CDATA in <{}>", path.join("/")),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() || !p.root_seen {
        bail!("the document ends before </qubes>");
    }
    Ok(p.domains)
}

fn name_of(e: &BytesStart) -> Result<String> {
    String::from_utf8(e.name().as_ref().to_vec()).map_err(|_| anyhow!("element name not UTF-8"))
}

fn attrs_of(e: &BytesStart) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| anyhow!("malformed attribute: {err}"))?;
        let k = String::from_utf8(a.key.as_ref().to_vec()).map_err(|_| anyhow!("attribute"))?;
        let v = a
            .unescape_value()
            .map_err(|err| anyhow!("attribute {k}: {err}"))?;
        out.push((k, v.into_owned()));
    }
    Ok(out)
}

fn attr<'a>(attrs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct Parser {
    root_seen: bool,
    domains: Vec<Domain>,
    /// Inside `<property name="uuid">` of the current domain.
    uuid_text: Option<String>,
    /// Inside `<devices class=…>`: its class.
    class: Option<String>,
    device: Option<Pending>,
    /// Inside `<option name=…>`: its name and text so far.
    option: Option<(String, String)>,
}

fn at(path: &Path, tail: &[&str]) -> bool {
    path.len() == tail.len() + 2
        && path[0] == "qubes"
        && path[1] == "domains"
        && path[2..].iter().zip(tail).all(|(a, b)| a == b)
}

impl Parser {
    fn open(&mut self, path: &Path, e: &BytesStart) -> Result<()> {
        let name = name_of(e)?;
        if path.is_empty() {
            if name != "qubes" || self.root_seen {
                bail!("the root element is <{name}>, not <qubes>");
            }
            self.root_seen = true;
            return Ok(());
        }
        let mut inner = path.clone();
        inner.push(name.clone());
        if at(&inner, &["domain"]) {
            self.domains.push(Domain::default());
        } else if at(&inner, &["domain", "properties", "property"]) {
            if attr(&attrs_of(e)?, "name") == Some("uuid") {
                self.uuid_text = Some(String::new());
            }
        } else if at(&inner, &["domain", "devices"]) {
            let attrs = attrs_of(e)?;
            let class = attr(&attrs, "class").context("<devices> without a class")?;
            self.class = Some(class.to_string());
        } else if at(&inner, &["domain", "devices", "device"]) {
            self.device = Some(Pending {
                class: self.class.clone().unwrap_or_default(),
                attrs: attrs_of(e)?,
                options: Vec::new(),
            });
        } else if at(&inner, &["domain", "devices", "device", "option"]) {
            let attrs = attrs_of(e)?;
            let k = attr(&attrs, "name").context("<option> without a name")?;
            self.option = Some((k.to_string(), String::new()));
        } else if path.len() >= 4 && path[3] == "devices" {
            bail!("unexpected <{name}> in <{}>", path.join("/"));
        }
        Ok(())
    }

    fn text(&mut self, path: &Path, t: &str) -> Result<()> {
        let slot = match (&mut self.uuid_text, &mut self.option) {
            (Some(u), _) => u,
            (None, Some((_, v))) => v,
            (None, None) => {
                if path.len() >= 4 && path[3] == "devices" && !t.trim().is_empty() {
                    bail!("unexpected text in <{}>", path.join("/"));
                }
                return Ok(());
            }
        };
        if slot.len() + t.len() > MAX_TEXT {
            bail!("text longer than {MAX_TEXT} bytes in <{}>", path.join("/"));
        }
        slot.push_str(t);
        Ok(())
    }

    fn close(&mut self, path: &Path) -> Result<()> {
        if at(path, &["domain", "properties", "property"]) {
            if let Some(u) = self.uuid_text.take() {
                let d = self.domains.last_mut().expect("inside a domain");
                if d.uuid.replace(u.trim().to_string()).is_some() {
                    bail!("a <domain> with two uuid properties");
                }
            }
        } else if at(path, &["domain", "devices", "device", "option"]) {
            let o = self.option.take().expect("inside an option");
            self.device
                .as_mut()
                .expect("inside a device")
                .options
                .push(o);
        } else if at(path, &["domain", "devices", "device"]) {
            let p = self.device.take().expect("inside a device");
            let d = self.domains.last_mut().expect("inside a domain");
            d.devices.push(assignment(p));
        } else if at(path, &["domain", "devices"]) {
            self.class = None;
        }
        Ok(())
    }
}

/// One `<device>` as a record's assignment, checked as a record is.
fn assignment(p: Pending) -> Result<DeviceAssignment> {
    let what = || {
        format!(
            "{} device {}:{}",
            p.class,
            attr(&p.attrs, "backend-domain").unwrap_or("?"),
            attr(&p.attrs, "id").unwrap_or("?")
        )
    };
    for (k, _) in &p.attrs {
        if !matches!(k.as_str(), "backend-domain" | "id" | "identity" | "mode") {
            bail!(
                "{}: attribute {k:?} is not one this sparsebak knows",
                what()
            );
        }
    }
    let backend = attr(&p.attrs, "backend-domain")
        .with_context(|| format!("{}: no backend-domain", what()))?;
    let port = attr(&p.attrs, "id").with_context(|| format!("{}: no id", what()))?;
    let a = DeviceAssignment {
        class: p.class.clone(),
        device: format!("{backend}:{port}"),
        identity: attr(&p.attrs, "identity").map(String::from),
        mode: attr(&p.attrs, "mode").unwrap_or("required").to_string(),
        options: p.options,
    };
    a.validate().with_context(what)?;
    Ok(a)
}

#[cfg(test)]
mod tests;
