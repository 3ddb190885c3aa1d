//! Export a qube's settings as Qubes' tools report them, into a
//! [`QubeRecord`] whose `volumes` the send fills in once the data is
//! stored.

use super::query::{self, QubeInfo};
use super::record::{check_value, DeviceAssignment, QubeRecord, FORMAT, VERSION};
use super::QvmTools;
use anyhow::Result;

/// Identity properties: Qubes assigns them to every new qube, so they are
/// never part of what recreates one. `label` and `template` have their own
/// fields.
pub const NOT_EXPORTED: &[&str] = &[
    "name",
    "uuid",
    "qid",
    "xid",
    "klass",
    "stubdom_xid",
    "start_time",
    "label",
    "template",
];

pub fn export(qvm: &dyn QvmTools, q: &QubeInfo, id: &str) -> Result<QubeRecord> {
    let name = q.name.as_str();
    let mut props = query::prefs(qvm, name)?;
    let label = props
        .iter()
        .find(|(k, _)| k == "label")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "red".into());
    props.retain(|(k, _)| !NOT_EXPORTED.contains(&k.as_str()));
    let mut features = query::features(qvm, name)?;
    keep_valid(name, "property", &mut props);
    keep_valid(name, "feature", &mut features);
    let firewall = query::firewall(qvm, name)?
        .into_iter()
        .filter(|r| !r.contains("expire="))
        .collect();
    Ok(QubeRecord {
        format: FORMAT.into(),
        version: VERSION,
        uuid: id.into(),
        name: name.into(),
        class: q.class.clone(),
        template: match q.class.as_str() {
            "AppVM" => q.template.clone(),
            _ => None,
        },
        label,
        properties: props,
        features,
        tags: query::tags(qvm, name)?,
        firewall,
        devices: devices(qvm, q),
        volumes: Vec::new(),
        created_utc: crate::timefmt::iso8601(crate::timefmt::now_unix()),
    })
}

/// The qube's persistent device assignments from qubes.xml; what cannot
/// be read is left out with a warning (the rest of the record is still
/// worth storing).
fn devices(qvm: &dyn QvmTools, q: &QubeInfo) -> Vec<DeviceAssignment> {
    let read = qvm
        .qubes_xml()
        .and_then(|xml| super::devices::assignments(&xml, &q.uuid));
    match read {
        Ok(a) => {
            for why in a.left_out {
                log::warn!(
                    "qube {}: {why}; that assignment is not stored in its settings record",
                    q.name
                );
            }
            a.devices
        }
        Err(e) => {
            log::warn!(
                "qube {}: its device assignments are not stored in its settings record: {e:#}",
                q.name
            );
            Vec::new()
        }
    }
}

/// Drop (with a warning) values that could not be passed back as one
/// argument: the record would be refused on restore.
fn keep_valid(qube: &str, what: &str, pairs: &mut Vec<(String, String)>) {
    pairs.retain(|(k, v)| match check_value(&format!("{what} {k}"), v) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("qube {qube}: {e:#}; not stored in its settings record");
            false
        }
    });
}
