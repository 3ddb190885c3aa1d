//! restore-qube into a qube that exists (and is halted): unless
//! `--data-only`, its settings are made the record's, each difference a
//! step of its own so the plan (and `--dry-run`) shows every change:
//! label, template (an AppVM's), properties set or reset to their default,
//! features set or unset, tags added or removed, the firewall rules
//! replaced, missing device assignments made. Its name and class are never
//! changed (a class that differs is refused before this). Assignments the
//! qube has that the record does not are left as they are, with a warning:
//! a device is hardware on this machine, and unassigning one could stop a
//! netvm from starting.

use super::plan::{Planner, Step};
use crate::qubes::devices::assignments;
use crate::qubes::export::NOT_EXPORTED;
use crate::qubes::query::{self, QubeInfo};
use crate::qubes::record::{check_value, QubeRecord};
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

    /// Recorded assignments the qube lacks are made; one it has in another
    /// form (mode, options, identity) and those it has beyond the record
    /// are left as they are, with a warning.
    fn devices_of(&mut self, q: &QubeInfo, r: &QubeRecord) -> Result<()> {
        let name = q.name.as_str();
        let read = self.qvm.qubes_xml().and_then(|x| assignments(&x, &q.uuid));
        let now = match read {
            Ok(a) => a.devices,
            Err(e) if r.devices.is_empty() => {
                log::debug!("qube {name}: devices not compared: {e:#}");
                return Ok(());
            }
            Err(e) => {
                self.warnings.push(format!(
                    "qube {name}: its device assignments could not be read ({e:#}): the \
                     recorded ones are not re-created; check them with qvm-device"
                ));
                return Ok(());
            }
        };
        let same_port = |a: &crate::qubes::record::DeviceAssignment,
                         b: &crate::qubes::record::DeviceAssignment| {
            a.class == b.class && a.device == b.device
        };
        for d in &r.devices {
            match now.iter().find(|c| same_port(c, d)) {
                Some(c) if c == d => {}
                Some(_) => self.warnings.push(format!(
                    "qube {name}: {} device {} is assigned otherwise than recorded; left as it is",
                    d.class, d.device
                )),
                None => self.device(name, d)?,
            }
        }
        for c in now
            .iter()
            .filter(|c| !r.devices.iter().any(|d| same_port(c, d)))
        {
            self.warnings.push(format!(
                "qube {name}: {} device {} is assigned but not in the record; left as it is",
                c.class, c.device
            ));
        }
        Ok(())
    }
}
