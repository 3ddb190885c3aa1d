//! One run of a scheduled job: record it, run it, log one summary line and
//! each error, notify the user if it failed, record the outcome. The job's
//! own result is returned unchanged: logging and notifying never turn a
//! success into a failure or hide one.

use super::log::JobLog;
use super::notify::Notifier;
use super::state::{self, JobRecord};
use super::Job;
use crate::timefmt::now_unix;
use anyhow::Result;
use std::path::Path;

/// A notification body is cut at this many characters.
const MAX_BODY: usize = 400;

pub struct JobEnv<'a> {
    pub meta_root: &'a Path,
    pub log: &'a dyn JobLog,
    pub notifier: &'a dyn Notifier,
}

/// Run `body` as scheduled job `job`.
pub fn run_job(env: &JobEnv, job: Job, body: impl FnOnce() -> Result<()>) -> Result<()> {
    let started = now_unix();
    let mut rec = JobRecord {
        started,
        finished: None,
        ok: None,
        summary: format!("{job} started"),
        errors: vec![],
    };
    if let Err(e) = state::save(env.meta_root, job, &rec) {
        env.log
            .error(&format!("{job}: cannot record the run: {e:#}"));
    }
    let result = body();
    let secs = now_unix() - started;
    rec.finished = Some(now_unix());
    rec.ok = Some(result.is_ok());
    match &result {
        Ok(()) => {
            rec.summary = format!("scheduled {job} succeeded in {secs} s");
            env.log.info(&rec.summary);
        }
        Err(e) => {
            rec.summary = format!("scheduled {job} FAILED after {secs} s");
            env.log.info(&rec.summary);
            // One line per error: a failed send names each volume that failed.
            for line in format!("{e:#}").lines().filter(|l| !l.trim().is_empty()) {
                env.log.error(&format!("{job}: {line}"));
                rec.errors.push(line.to_string());
            }
            let body: String = format!("{e:#}").chars().take(MAX_BODY).collect();
            let title = format!("sparsebak: scheduled {job} failed");
            if let Err(ne) = env.notifier.notify(&title, &body) {
                env.log
                    .error(&format!("{job}: cannot notify the user: {ne:#}"));
            }
        }
    }
    if let Err(e) = state::save(env.meta_root, job, &rec) {
        env.log
            .error(&format!("{job}: cannot record the run: {e:#}"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::log::MemLog;
    use crate::jobs::notify::MemNotifier;

    #[test]
    fn a_success_logs_one_line_and_notifies_nobody() {
        let d = tempfile::tempdir().unwrap();
        let (log, n) = (MemLog::default(), MemNotifier::default());
        let env = JobEnv {
            meta_root: d.path(),
            log: &log,
            notifier: &n,
        };
        run_job(&env, Job::Monitor, || {
            // While it runs, the record says so.
            let r = state::load(d.path(), Job::Monitor).unwrap().unwrap();
            assert_eq!((r.ok, r.finished), (None, None));
            Ok(())
        })
        .unwrap();
        let lines = log.0.lock().unwrap().clone();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("info: scheduled monitor succeeded in "),
            "{lines:?}"
        );
        assert!(n.0.lock().unwrap().is_empty());
        let r = state::load(d.path(), Job::Monitor).unwrap().unwrap();
        assert_eq!(r.ok, Some(true));
        assert!(r.finished.is_some() && r.errors.is_empty());
    }

    #[test]
    fn a_failure_logs_each_error_notifies_and_is_returned() {
        let d = tempfile::tempdir().unwrap();
        let (log, n) = (MemLog::default(), MemNotifier::default());
        let env = JobEnv {
            meta_root: d.path(),
            log: &log,
            notifier: &n,
        };
        let e = run_job(&env, Job::Send, || {
            anyhow::bail!("send of 2 volumes failed:\n  vol1: disk full\n  vol2: gone")
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("send of 2 volumes failed"));
        let lines = log.0.lock().unwrap().clone();
        assert!(
            lines[0].starts_with("info: scheduled send FAILED after "),
            "{lines:?}"
        );
        assert_eq!(
            &lines[1..],
            [
                "err: send: send of 2 volumes failed:",
                "err: send:   vol1: disk full",
                "err: send:   vol2: gone"
            ]
        );
        let told = n.0.lock().unwrap().clone();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].0, "sparsebak: scheduled send failed");
        assert!(told[0].1.contains("vol1: disk full"));
        let r = state::load(d.path(), Job::Send).unwrap().unwrap();
        assert_eq!(r.ok, Some(false));
        assert_eq!(r.errors.len(), 3);
    }
}
