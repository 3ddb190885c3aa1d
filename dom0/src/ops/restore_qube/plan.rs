//! The plan of a restore: every step, decided and checked before anything
//! changes (a plan that cannot be carried out is refused whole).

use super::devices::{argv as device_argv, device_cli, unassign_argv, DeviceCli};
use super::fetch::Found;
use super::RestoreQubeOptions;
use crate::config::SourceSpec;
use crate::qubes::query::{is_running, pool_info, volume_info, QubeInfo};
use crate::qubes::record::{DeviceAssignment, QubeRecord, QUBE_PROPERTIES};
use crate::qubes::{check_qube_name, QvmTools};
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Shutdown {
        qube: String,
    },
    Create {
        qube: String,
        class: String,
        label: String,
        template: Option<String>,
        pool: Option<String>,
    },
    SetProperty {
        qube: String,
        name: String,
        value: String,
    },
    SetFeature {
        qube: String,
        name: String,
        value: String,
    },
    AddTags {
        qube: String,
        tags: Vec<String>,
    },
    /// Back to its default (`qvm-prefs --default`): an existing qube's
    /// property the record does not set.
    ResetProperty {
        qube: String,
        name: String,
    },
    /// `qvm-features --default`: an existing qube's feature the record
    /// does not have.
    UnsetFeature {
        qube: String,
        name: String,
    },
    /// `qvm-tags QUBE del`: an existing qube's tags the record does not
    /// have.
    RemoveTags {
        qube: String,
        tags: Vec<String>,
    },
    /// Make the qube's rules exactly these.
    Firewall {
        qube: String,
        rules: Vec<String>,
    },
    /// Re-create a device assignment with this `qvm-device` command
    /// ([`super::devices`]); a failure is a warning, not the end of the run.
    Device {
        qube: String,
        argv: Vec<String>,
    },
    /// Remove an existing qube's device assignment that the record does
    /// not have (or has in another form) with this `qvm-device` command;
    /// `again` makes it again, for the output. A failure is a warning.
    Unassign {
        qube: String,
        argv: Vec<String>,
        again: Option<Vec<String>>,
    },
    /// Write `session` of archive volume `archive` into the qube's
    /// `volume`; `fresh`: the qube was just created (its empty LV is
    /// written directly), otherwise the LV is kept renamed.
    Write {
        qube: String,
        volume: String,
        archive: VolName,
        session: SessionName,
        size: u64,
        fresh: bool,
    },
    /// Point the configuration's qube `id` at the restored qube, so the
    /// next send continues its archive volumes.
    Bind {
        qube: String,
        id: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Shutdown { qube } => write!(f, "shut down {qube} (qvm-shutdown --wait)"),
            Step::Create {
                qube,
                class,
                label,
                template,
                pool,
            } => {
                write!(f, "create {class} {qube} (label {label}")?;
                if let Some(t) = template {
                    write!(f, ", template {t}")?;
                }
                if let Some(p) = pool {
                    write!(f, ", pool {p}")?;
                }
                write!(f, ")")
            }
            Step::SetProperty { qube, name, value } => {
                write!(f, "set {qube} property {name} = {value:?}")
            }
            Step::SetFeature { qube, name, value } => {
                write!(f, "set {qube} feature {name} = {value:?}")
            }
            Step::AddTags { qube, tags } => write!(f, "tag {qube}: {}", tags.join(" ")),
            Step::ResetProperty { qube, name } => {
                write!(f, "reset {qube} property {name} to its default")
            }
            Step::UnsetFeature { qube, name } => write!(f, "unset {qube} feature {name}"),
            Step::RemoveTags { qube, tags } => {
                write!(f, "remove tags from {qube}: {}", tags.join(" "))
            }
            Step::Firewall { qube, rules } => {
                write!(f, "set the firewall of {qube} to {} rule(s)", rules.len())
            }
            Step::Device { qube, argv } => {
                write!(f, "assign a device to {qube}: {}", argv.join(" "))
            }
            Step::Unassign { qube, argv, again } => {
                write!(
                    f,
                    "remove a device assignment from {qube}: {}",
                    argv.join(" ")
                )?;
                if let Some(a) = again {
                    write!(f, " (to make it again: {})", a.join(" "))?;
                }
                Ok(())
            }
            Step::Write {
                qube,
                volume,
                archive,
                session,
                size,
                fresh,
            } => write!(
                f,
                "write {qube}:{volume} from {archive} session {} ({size} bytes){}",
                session.timestamp(),
                if *fresh {
                    ""
                } else {
                    ", keeping the current volume as <LV>.pre-restore-<time>"
                }
            ),
            Step::Bind { qube, id } => write!(
                f,
                "record {qube} as qube {id} in the configuration (send continues its chain)"
            ),
        }
    }
}

pub struct Planned {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

/// What the plan has decided so far.
pub(super) struct Planner<'a> {
    pub(super) qvm: &'a dyn QvmTools,
    o: &'a RestoreQubeOptions,
    existing: BTreeMap<String, QubeInfo>,
    /// Qubes that exist, or will once the steps so far are done.
    pub(super) will_exist: BTreeSet<String>,
    pub(super) steps: Vec<Step>,
    pub(super) warnings: Vec<String>,
    /// The installed qvm-device's form, once asked.
    device_cli: Option<DeviceCli>,
    /// What the archive backs up: the pool every target must be in.
    source: Option<&'a SourceSpec>,
}

pub fn plan(
    qvm: &dyn QvmTools,
    o: &RestoreQubeOptions,
    existing: &[QubeInfo],
    found: Vec<Found>,
    dest_vm: Option<String>,
    source: Option<&SourceSpec>,
) -> Result<Planned> {
    let mut p = Planner {
        qvm,
        o,
        existing: existing
            .iter()
            .map(|q| (q.name.clone(), q.clone()))
            .collect(),
        will_exist: existing.iter().map(|q| q.name.clone()).collect(),
        steps: Vec::new(),
        warnings: Vec::new(),
        device_cli: None,
        source,
    };
    let mut errors = Vec::new();
    if let Some(pool) = &o.pool {
        if let Err(e) = pool_fits(qvm, source, pool) {
            errors.push(format!("--pool={pool}: {e:#}"));
        }
    }
    for f in dependency_order(found, &mut p.warnings) {
        let name = &f.record.name;
        if o.all && o.exclude.contains(name) {
            p.warnings.push(format!("qube {name} left out (--exclude)"));
            continue;
        }
        let target = o.as_name.as_ref().unwrap_or(name);
        if dest_vm.as_ref() == Some(target) {
            let why = format!(
                "qube {target} holds this archive's destination (it serves the restore): \
                 restore it with the archive reached another way"
            );
            match o.all {
                true => p.warnings.push(format!("{why}; left out")),
                false => errors.push(why),
            }
            continue;
        }
        if let Err(e) = p.qube(&f) {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("nothing was changed: {}", errors.join("; "));
    }
    Ok(Planned {
        steps: p.steps,
        warnings: p.warnings,
    })
}

impl Planner<'_> {
    fn qube(&mut self, f: &Found) -> Result<()> {
        self.warnings.extend(f.notes.iter().cloned());
        let r = &f.record;
        let target = self.o.as_name.clone().unwrap_or_else(|| r.name.clone());
        check_qube_name(&target)?;
        let fresh = match self.existing.get(&target).cloned() {
            Some(q) => {
                self.existing_target(&q, r)?;
                false
            }
            None => {
                self.create(&target, r)?;
                true
            }
        };
        for v in &r.volumes {
            self.steps.push(Step::Write {
                qube: target.clone(),
                volume: v.volume.clone(),
                archive: VolName::new(&v.archive)?,
                session: SessionName::new(&v.session)?,
                size: v.size,
                fresh,
            });
        }
        if self.o.as_name.is_none() {
            self.steps.push(Step::Bind {
                qube: target.clone(),
                id: f.id.clone(),
            });
        }
        self.will_exist.insert(target);
        Ok(())
    }

    fn existing_target(&mut self, q: &QubeInfo, r: &QubeRecord) -> Result<()> {
        if q.class != r.class {
            bail!(
                "qube {} exists as a {}, but the archive's {} is a {}: restore it under another name (--as NEWNAME)",
                q.name, q.class, r.name, r.class
            );
        }
        if is_running(self.qvm, &q.name)? {
            if !self.o.shutdown {
                bail!(
                    "qube {} is running: shut it down first (qvm-shutdown --wait {}) or pass --shutdown",
                    q.name, q.name
                );
            }
            self.steps.push(Step::Shutdown {
                qube: q.name.clone(),
            });
        }
        for v in &r.volumes {
            let info = volume_info(self.qvm, &q.name, &v.volume)?;
            pool_fits(self.qvm, self.source, &info.pool)
                .with_context(|| format!("{}:{}", q.name, v.volume))?;
        }
        if self.o.data_only {
            self.warnings.push(format!(
                "qube {} exists: only its data is restored (--data-only), its settings are left \
                 as they are",
                q.name
            ));
            return Ok(());
        }
        self.settle(q, r)
    }

    /// Whether property `k = v` names a qube that will not exist (it is
    /// then left out, with a warning).
    pub(super) fn names_missing_qube(&mut self, target: &str, k: &str, v: &str) -> bool {
        let missing = QUBE_PROPERTIES.contains(&k)
            && !matches!(v, "" | "None" | "none")
            && !self.will_exist.contains(v)
            && v != target;
        if missing {
            self.warnings.push(format!(
                "qube {target}: property {k} names qube {v}, which does not exist: left at its default"
            ));
        }
        missing
    }

    fn create(&mut self, target: &str, r: &QubeRecord) -> Result<()> {
        if let Some(t) = &r.template {
            if !self.will_exist.contains(t) {
                bail!(
                    "qube {target} needs its template {t}, which neither exists nor is in the archive: \
                     install it (qvm-template install {t}) and run the restore again"
                );
            }
        }
        self.steps.push(Step::Create {
            qube: target.into(),
            class: r.class.clone(),
            label: r.label.clone(),
            template: r.template.clone(),
            pool: self.o.pool.clone(),
        });
        for (k, v) in &r.properties {
            if self.names_missing_qube(target, k, v) {
                continue;
            }
            self.steps.push(Step::SetProperty {
                qube: target.into(),
                name: k.clone(),
                value: v.clone(),
            });
        }
        for (k, v) in &r.features {
            self.steps.push(Step::SetFeature {
                qube: target.into(),
                name: k.clone(),
                value: v.clone(),
            });
        }
        if !r.tags.is_empty() {
            self.steps.push(Step::AddTags {
                qube: target.into(),
                tags: r.tags.clone(),
            });
        }
        self.steps.push(Step::Firewall {
            qube: target.into(),
            rules: r.firewall.clone(),
        });
        for d in &r.devices {
            self.device(target, d)?;
        }
        Ok(())
    }

    /// A step re-creating device assignment `d`; one whose backend qube is
    /// missing, or that this Qubes cannot express, is left out with a
    /// warning.
    pub(super) fn device(&mut self, target: &str, d: &DeviceAssignment) -> Result<()> {
        match self.device_step(target, d)? {
            Ok(step) => self.steps.push(step),
            Err(why) => self.warnings.push(format!(
                "qube {target}: {} device {}: {why}: not assigned",
                d.class, d.device
            )),
        }
        Ok(())
    }

    /// The step re-creating assignment `d`, or why there can be none.
    pub(super) fn device_step(
        &mut self,
        target: &str,
        d: &DeviceAssignment,
    ) -> Result<Result<Step, String>> {
        let (backend, _) = d.backend_port();
        if backend != "dom0" && !self.will_exist.contains(backend) {
            return Ok(Err(format!("its backend qube {backend} does not exist")));
        }
        let cli = self.device_cli()?;
        Ok(device_argv(cli, target, d).map(|argv| Step::Device {
            qube: target.into(),
            argv,
        }))
    }

    /// A step removing assignment `d` (as qubes.xml has it) from `target`.
    pub(super) fn unassign(&mut self, target: &str, d: &DeviceAssignment) -> Result<()> {
        let cli = self.device_cli()?;
        self.steps.push(Step::Unassign {
            qube: target.into(),
            argv: unassign_argv(cli, target, d),
            again: device_argv(cli, target, d).ok(),
        });
        Ok(())
    }

    /// The installed qvm-device's form, asked once.
    fn device_cli(&mut self) -> Result<DeviceCli> {
        Ok(match self.device_cli {
            Some(c) => c,
            None => *self.device_cli.insert(device_cli(self.qvm)?),
        })
    }
}

/// Whether Qubes pool `name` is the pool the archive backs up: restore-qube
/// writes a qube only there (docs/FORMAT.md §16.4).
fn pool_fits(qvm: &dyn QvmTools, source: Option<&SourceSpec>, name: &str) -> Result<()> {
    let p = pool_info(qvm, name)?;
    let fits = match (source, p.driver.as_str()) {
        (Some(SourceSpec::Lvm { vg, pool }), "lvm_thin") => {
            p.volume_group.as_ref() == Some(vg) && p.thin_pool.as_ref() == Some(pool)
        }
        (Some(SourceSpec::Reflink { path }), "file-reflink") => p
            .dir_path
            .as_deref()
            .is_some_and(|d| std::path::Path::new(d).components().eq(path.components())),
        _ => false,
    };
    if !fits {
        let archive = match source {
            Some(SourceSpec::Lvm { vg, pool }) => format!("the LVM thin pool {vg}/{pool}"),
            Some(SourceSpec::Reflink { path }) => {
                format!("the file-reflink pool at {}", path.display())
            }
            _ => "no Qubes pool".to_string(),
        };
        let at = match (&p.volume_group, &p.thin_pool, &p.dir_path) {
            (Some(vg), Some(tp), _) => format!("{vg}/{tp}"),
            (_, _, Some(d)) => d.clone(),
            _ => "?".into(),
        };
        bail!(
            "pool {name} (driver {}, {at}) is not the pool this archive backs up ({archive}): \
             restore-qube writes qubes only there; create the qube there (--pool) or restore it \
             --as a new name",
            p.driver
        );
    }
    Ok(())
}

/// Templates and the qubes others name (netvms, disposable templates)
/// before those that need them; otherwise by name. A cycle (which Qubes
/// does not allow, so only a damaged record makes one) is broken by name,
/// with a warning.
pub fn dependency_order(found: Vec<Found>, warnings: &mut Vec<String>) -> Vec<Found> {
    let names: BTreeSet<String> = found.iter().map(|f| f.record.name.clone()).collect();
    let deps = |r: &QubeRecord| -> BTreeSet<String> {
        let mut d: BTreeSet<String> = r.template.iter().cloned().collect();
        for (k, v) in &r.properties {
            if QUBE_PROPERTIES.contains(&k.as_str()) {
                d.insert(v.clone());
            }
        }
        d.retain(|n| names.contains(n) && *n != r.name);
        d
    };
    let rank = |r: &QubeRecord| match (r.class.as_str(), r.property("provides_network")) {
        ("TemplateVM", _) => 0,
        (_, Some("True")) => 1,
        _ => 2,
    };
    let mut left: Vec<Found> = found;
    left.sort_by(|a, b| (rank(&a.record), &a.record.name).cmp(&(rank(&b.record), &b.record.name)));
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while !left.is_empty() {
        let i = match left.iter().position(|f| deps(&f.record).is_subset(&done)) {
            Some(i) => i,
            None => {
                warnings.push(format!(
                    "the qubes {} name each other in a cycle; restored in name order",
                    left.iter()
                        .map(|f| f.record.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                0
            }
        };
        let f = left.remove(i);
        done.insert(f.record.name.clone());
        out.push(f);
    }
    out
}
