//! restore-qube into a qube that exists (and is halted): unless
//! `--data-only`, its settings are made the record's, each difference a
//! step of its own so the plan (and `--dry-run`) shows every change:
//! label, template (an AppVM's), properties set or reset to their default,
//! features set or unset, tags added or removed, the firewall rules
//! replaced, device assignments made the record's. Its name and class are
//! never changed (a class that differs is refused before this).
//!
//! Device assignments: one the record has and the qube lacks is made; one
//! the qube has in another form (mode, options, identity) is removed and
//! made as recorded; one the record does not have is removed. Each removal
//! is a step that says how to make it again: a device is this machine's
//! hardware (a netvm's network card, restored on other hardware, sits on
//! another PCI port), so the user sees every one, `--dry-run` first, and
//! `--data-only` keeps them all. A recorded form this Qubes cannot make,
//! or whose backend qube is missing, leaves the current assignment as it
//! is, with a warning.

use super::plan::{Planner, Step};
use crate::qubes::devices::assignments;
use crate::qubes::export::NOT_EXPORTED;
use crate::qubes::query::{self, QubeInfo};
use crate::qubes::record::{check_value, DeviceAssignment, QubeRecord};
use anyhow::Result;

impl Planner<'_> {
    /// Steps that make existing qube `q`'s settings those of `r`.
    pub(super) fn settle(&mut self, q: &QubeInfo, r: &QubeRecord) -> Result<()> {
        let name = q.name.as_str();
        let qvm = self.qvm;
        let mut props = query::prefs(qvm, name)?;
        let label = props.iter().find(|(k, _)| k == "label").map(|(_, v)| v);
        if label != Some(&r.label) {
            self.set(name, "label", &r.label);
        }
        if let (Some(t), "AppVM") = (&r.template, r.class.as_str()) {
            if q.template.as_ref() != Some(t) && !self.names_missing_qube(name, "template", t) {
                self.set(name, "template", t);
            }
        }
        // What a send would not have recorded is not reset either.
        props.retain(|(k, v)| !NOT_EXPORTED.contains(&k.as_str()) && check_value(k, v).is_ok());
        for (k, v) in &r.properties {
            let now = props.iter().find(|(c, _)| c == k).map(|(_, v)| v);
            if now != Some(v) && !self.names_missing_qube(name, k, v) {
                self.set(name, k, v);
            }
        }
        for (k, _) in props.iter().filter(|(k, _)| r.property(k).is_none()) {
            self.steps.push(Step::ResetProperty {
                qube: name.into(),
                name: k.clone(),
            });
        }
        self.features(name, r)?;
        self.tags(name, r)?;
        if query::firewall(qvm, name)? != r.firewall {
            self.steps.push(Step::Firewall {
                qube: name.into(),
                rules: r.firewall.clone(),
            });
        }
        self.devices_of(q, r)
    }

    fn set(&mut self, qube: &str, name: &str, value: &str) {
        self.steps.push(Step::SetProperty {
            qube: qube.into(),
            name: name.into(),
            value: value.into(),
        });
    }

    fn features(&mut self, name: &str, r: &QubeRecord) -> Result<()> {
        let now = query::features(self.qvm, name)?;
        for (k, v) in &r.features {
            if !now.iter().any(|(c, cv)| c == k && cv == v) {
                self.steps.push(Step::SetFeature {
                    qube: name.into(),
                    name: k.clone(),
                    value: v.clone(),
                });
            }
        }
        for (k, v) in &now {
            if !r.features.iter().any(|(c, _)| c == k) && check_value(k, v).is_ok() {
                self.steps.push(Step::UnsetFeature {
                    qube: name.into(),
                    name: k.clone(),
                });
            }
        }
        Ok(())
    }

    fn tags(&mut self, name: &str, r: &QubeRecord) -> Result<()> {
        let now = query::tags(self.qvm, name)?;
        let add: Vec<String> = r
            .tags
            .iter()
            .filter(|t| !now.contains(t))
            .cloned()
            .collect();
        let del: Vec<String> = now
            .iter()
            .filter(|t| !r.tags.contains(t))
            .cloned()
            .collect();
        if !add.is_empty() {
            self.steps.push(Step::AddTags {
                qube: name.into(),
                tags: add,
            });
        }
        if !del.is_empty() {
            self.steps.push(Step::RemoveTags {
                qube: name.into(),
                tags: del,
            });
        }
        Ok(())
    }

    /// The qube's device assignments made the record's (see the module's
    /// documentation).
    fn devices_of(&mut self, q: &QubeInfo, r: &QubeRecord) -> Result<()> {
        let name = q.name.as_str();
        let read = self.qvm.qubes_xml().and_then(|x| assignments(&x, &q.uuid));
        let now = match read {
            Ok(a) => a,
            Err(e) => {
                self.warnings.push(format!(
                    "qube {name}: its device assignments could not be read ({e:#}): they are not \
                     compared with the record, and the recorded ones are not re-created; check \
                     them with qvm-device"
                ));
                return Ok(());
            }
        };
        for why in &now.left_out {
            self.warnings.push(format!(
                "qube {name}: a device assignment sparsebak cannot read is left as it is ({why})"
            ));
        }
        let same_port =
            |a: &DeviceAssignment, b: &DeviceAssignment| a.class == b.class && a.device == b.device;
        for c in &now.devices {
            if !r.devices.iter().any(|d| same_port(c, d)) {
                self.unassign(name, c)?;
            }
        }
        for d in &r.devices {
            match now.devices.iter().find(|c| same_port(c, d)) {
                Some(c) if c == d => {}
                Some(c) => match self.device_step(name, d)? {
                    Ok(step) => {
                        self.unassign(name, c)?;
                        self.steps.push(step);
                    }
                    Err(why) => self.warnings.push(format!(
                        "qube {name}: {} device {} is assigned otherwise than recorded, and the \
                         recorded form cannot be made ({why}): left as it is",
                        d.class, d.device
                    )),
                },
                None => self.device(name, d)?,
            }
        }
        Ok(())
    }
}
