//! Carrying out a restore plan, step by step. A failure stops the run
//! and says what was done; a qube created by this run and left incomplete
//! is named, with how to remove it.

use super::plan::Step;
use super::RestoreQubeReport;
use crate::config::SourceSpec;
use crate::ops::context::Ctx;
use crate::ops::qube_add::{archive_pool, bind_qube, record_path};
use crate::ops::Ui;
use crate::output::Output;
use crate::qubes::map::{map_qube, Mapped};
use crate::qubes::query::{self, is_running, list_qubes};
use crate::qubes::QvmTools;
use crate::restore::restore;
use anyhow::{anyhow, bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::Bytes;
use std::collections::BTreeSet;

pub(super) struct Exec<'a, 'c> {
    pub(super) ctx: &'a mut Ctx<'c>,
    pub(super) qvm: &'a dyn QvmTools,
    ui: &'a dyn Ui,
    /// `YYYYMMDD-HHMMSS` of this run, in the names of kept LVs and images.
    pub(super) stamp: String,
    timeout: u64,
}

pub fn run(
    ctx: &mut Ctx,
    qvm: &dyn QvmTools,
    ui: &dyn Ui,
    steps: Vec<Step>,
    timeout: std::time::Duration,
    report: &mut RestoreQubeReport,
) -> Result<()> {
    let now = crate::timefmt::parts_from_unix(crate::timefmt::now_unix());
    let stamp = SessionName::from_parts(now)?.timestamp().to_string();
    let mut x = Exec {
        ctx,
        qvm,
        ui,
        stamp,
        timeout: timeout.as_secs().max(1),
    };
    let mut created = BTreeSet::new();
    for step in steps {
        if let Err(e) = x.step(&step, report) {
            let qube = qube_of(&step);
            let half = match created.contains(qube) && !matches!(step, Step::Create { .. }) {
                true => format!(
                    "; qube {qube} was created by this restore but is incomplete: remove it \
                     (qvm-remove {qube}) or finish it by hand"
                ),
                false => String::new(),
            };
            return Err(e.context(format!(
                "restore stopped at: {step} ({} step(s) done before){half}",
                report.steps.len()
            )));
        }
        if let Step::Create { qube, .. } = &step {
            created.insert(qube.clone());
        }
        report.steps.push(step);
    }
    Ok(())
}

fn qube_of(s: &Step) -> &str {
    match s {
        Step::Shutdown { qube }
        | Step::Create { qube, .. }
        | Step::SetProperty { qube, .. }
        | Step::SetFeature { qube, .. }
        | Step::AddTags { qube, .. }
        | Step::ResetProperty { qube, .. }
        | Step::UnsetFeature { qube, .. }
        | Step::RemoveTags { qube, .. }
        | Step::Firewall { qube, .. }
        | Step::Device { qube, .. }
        | Step::Unassign { qube, .. }
        | Step::Write { qube, .. }
        | Step::Bind { qube, .. } => qube,
    }
}

impl Exec<'_, '_> {
    fn step(&mut self, s: &Step, report: &mut RestoreQubeReport) -> Result<()> {
        let q = self.qvm;
        match s {
            Step::Shutdown { qube } => {
                let t = self.timeout.to_string();
                q.run(&["qvm-shutdown", "--wait", "--timeout", &t, qube])?;
                if is_running(q, qube)? {
                    bail!("qube {qube} is still running after qvm-shutdown");
                }
            }
            Step::Create {
                qube,
                class,
                label,
                template,
                pool,
            } => {
                let mut argv = vec!["qvm-create", "--class", class, "--label", label];
                if let Some(t) = template {
                    argv.extend(["--template", t]);
                }
                if let Some(p) = pool {
                    argv.extend(["-P", p]);
                }
                argv.push(qube);
                q.run(&argv)?;
            }
            Step::SetProperty { qube, name, value } => {
                drop(q.run(&["qvm-prefs", qube, name, value])?)
            }
            Step::SetFeature { qube, name, value } => {
                drop(q.run(&["qvm-features", qube, name, value])?)
            }
            Step::AddTags { qube, tags } => {
                let mut argv = vec!["qvm-tags", qube.as_str(), "add"];
                argv.extend(tags.iter().map(String::as_str));
                q.run(&argv)?;
            }
            // Undoing what was set since the record: Qubes may refuse one
            // (a tag or feature it manages itself); that is a warning, not
            // the end of the restore.
            Step::ResetProperty { qube, name } => {
                self.undo_since(&["qvm-prefs", "--default", qube, name], report)
            }
            Step::UnsetFeature { qube, name } => {
                self.undo_since(&["qvm-features", "--default", qube, name], report)
            }
            Step::RemoveTags { qube, tags } => {
                let mut argv = vec!["qvm-tags", qube.as_str(), "del"];
                argv.extend(tags.iter().map(String::as_str));
                self.undo_since(&argv, report)
            }
            Step::Firewall { qube, rules } => self.firewall(qube, rules)?,
            Step::Device { qube, argv } => {
                let args: Vec<&str> = argv.iter().map(String::as_str).collect();
                if let Err(e) = q.run(&args) {
                    report.warnings.push(format!(
                        "qube {qube}: {} failed: {e:#}; assign that device by hand",
                        argv.join(" ")
                    ));
                }
            }
            Step::Unassign { qube, argv, .. } => {
                let args: Vec<&str> = argv.iter().map(String::as_str).collect();
                if let Err(e) = q.run(&args) {
                    report.warnings.push(format!(
                        "qube {qube}: {} failed: {e:#}; remove that assignment by hand \
                         (qvm-device CLASS list {qube})",
                        argv.join(" ")
                    ));
                }
            }
            Step::Write {
                qube,
                volume,
                archive,
                session,
                size,
                fresh,
            } => self.write(qube, volume, archive, session, *size, *fresh, report)?,
            Step::Bind { qube, id } => self.bind(qube, id, report)?,
        }
        Ok(())
    }

    fn undo_since(&self, argv: &[&str], report: &mut RestoreQubeReport) {
        if let Err(e) = self.qvm.run(argv) {
            report
                .warnings
                .push(format!("{} failed ({e:#}): left as it is", argv.join(" ")));
        }
    }

    /// Replace the qube's rules with `rules`: add them after the current
    /// ones, then delete those (so the qube is never without rules).
    fn firewall(&self, qube: &str, rules: &[String]) -> Result<()> {
        let q = self.qvm;
        let old = query::firewall(q, qube)?;
        if old == rules {
            return Ok(());
        }
        for r in rules {
            let words = rule_words(r);
            let mut argv = vec!["qvm-firewall", qube, "add"];
            argv.extend(words.iter().map(String::as_str));
            q.run(&argv)?;
        }
        for _ in &old {
            q.run(&["qvm-firewall", qube, "del", "--rule-no", "0"])?;
        }
        let now = query::firewall(q, qube)?;
        if now != rules {
            bail!("the firewall of {qube} reads back as {now:?}, not the restored {rules:?}");
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        qube: &str,
        volume: &str,
        archive: &VolName,
        session: &SessionName,
        size: u64,
        fresh: bool,
        report: &mut RestoreQubeReport,
    ) -> Result<()> {
        let q = self.qvm;
        let info = query::volume_info(q, qube, volume)?;
        let pool = query::pool_info(q, &info.pool)?;
        if pool.driver == "file-reflink"
            || !matches!(self.ctx.config.source, Some(SourceSpec::Lvm { .. }))
        {
            let to = super::Target {
                qube,
                volume,
                info: &info,
                pool: &pool,
                fresh,
            };
            return self.write_image(&to, archive, session, size, report);
        }
        let (Some(vg), Some(thin), "lvm_thin") =
            (&pool.volume_group, &pool.thin_pool, pool.driver.as_str())
        else {
            bail!(
                "{qube}:{volume} is in pool {} (driver {}); restore-qube writes LVM thin volumes \
                 (create the qube in one with --pool)",
                pool.name,
                pool.driver
            );
        };
        let lv = match info.vid.split_once('/') {
            Some((v, lv)) if v == vg && !lv.is_empty() && !lv.contains('/') => lv.to_string(),
            _ => bail!("{qube}:{volume} has volume id {:?}, not {vg}/LV", info.vid),
        };
        if size > info.size {
            q.run(&[
                "qvm-volume",
                "extend",
                &format!("{qube}:{volume}"),
                &size.to_string(),
            ])?;
        }
        let lvm = self.ctx.lvm;
        let kept = format!("{lv}.pre-restore-{}", self.stamp);
        if !fresh {
            lvm.rename(vg, &lv, &kept)?;
            if let Err(e) = lvm.create_thin(vg, thin, &lv, Bytes(size.max(info.size))) {
                lvm.rename(vg, &kept, &lv)
                    .context("putting the volume back")?;
                return Err(e);
            }
        }
        let res = self.write_lv(archive, session, &lvm.device_path(vg, &lv), size);
        match (res, fresh) {
            (Ok(()), true) => Ok(()),
            (Ok(()), false) => {
                report.undo.push(format!(
                    "{qube}:{volume}: the volume as it was is {vg}/{kept}; to go back: \
                     qvm-shutdown --wait {qube}; lvremove {vg}/{lv}; lvrename {vg} {kept} {lv}"
                ));
                Ok(())
            }
            (Err(e), true) => Err(e),
            (Err(e), false) => {
                let back = lvm
                    .remove(vg, &lv)
                    .and_then(|()| lvm.rename(vg, &kept, &lv));
                Err(match back {
                    Ok(()) => e.context(format!("{qube}:{volume} is unchanged")),
                    Err(b) => e.context(format!(
                        "and {vg}/{kept} could not be put back ({b:#}): rename it to {lv} by hand"
                    )),
                })
            }
        }
    }

    /// The checked restore path of `receive`, into the LV's device.
    fn write_lv(
        &self,
        archive: &VolName,
        session: &SessionName,
        device: &std::path::Path,
        size: u64,
    ) -> Result<()> {
        self.restore_into(archive, session, || {
            Output::create(device, Bytes(size), true)
        })
    }

    /// The checked restore path of `receive`: `session` of `archive` into
    /// the output `open` makes (after the consistency check), committed
    /// only when every chunk was written.
    pub(super) fn restore_into(
        &self,
        archive: &VolName,
        session: &SessionName,
        open: impl FnOnce() -> Result<Output>,
    ) -> Result<()> {
        let ctx = &*self.ctx;
        ctx.config.volume(archive)?;
        // As receive: never from a destination that lost or rolled back data.
        let mut conn = crate::ops::consistent(ctx, false, archive, false)?;
        let out = open()?;
        let pb = self.ui.progress();
        match restore(
            ctx,
            &mut conn,
            archive,
            Some(session),
            Some(&out),
            pb.as_ref(),
        ) {
            Ok(_) => {
                out.commit()?;
                conn.close()
            }
            Err(e) => {
                out.abandon();
                Err(e.context(format!("restore of {archive} session {session} failed")))
            }
        }
    }

    /// Record the restored qube so `send` continues its archive volumes.
    fn bind(&mut self, qube: &str, id: &str, report: &mut RestoreQubeReport) -> Result<()> {
        let qubes = list_qubes(self.qvm)?;
        let q = qubes
            .iter()
            .find(|q| q.name == qube)
            .ok_or_else(|| anyhow!("qube {qube} is not listed by qvm-ls after its restore"))?;
        let mapped = archive_pool(self.ctx).and_then(|a| map_qube(self.qvm, q, a));
        match mapped {
            Ok(Mapped::Volumes(vols)) => {
                let path = record_path(self.ctx, id)?;
                bind_qube(self.ctx, q, id, &vols, path)?;
                self.ctx.config.save(&self.ctx.meta.root)?;
            }
            Ok(Mapped::Skipped(why)) => report.warnings.push(why),
            Err(e) => report.warnings.push(format!(
                "qube {qube} is restored, but send will not back it up as before: {e:#}"
            )),
        }
        Ok(())
    }
}

/// A rule's `key=value` words; `comment=…` (last, may hold spaces) is one.
fn rule_words(rule: &str) -> Vec<String> {
    let (head, comment) = match rule.split_once("comment=") {
        Some((h, c)) => (h, Some(format!("comment={c}"))),
        None => (rule, None),
    };
    head.split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .chain(comment)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rule_words_keep_a_comment_whole() {
        assert_eq!(
            super::rule_words("action=drop proto=tcp comment=no more traffic"),
            ["action=drop", "proto=tcp", "comment=no more traffic"]
        );
    }
}
