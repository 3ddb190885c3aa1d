//! The record of each job's last run: `<meta-dir>/jobs/<job>.json`, written
//! when the run starts (without an end) and again when it ends, each time
//! to a temporary file that is fsynced and renamed over the old record.

use super::Job;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Records are small; a larger file is not one of ours.
const MAX_RECORD: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Unix time the run started.
    pub started: i64,
    /// Unix time it ended; `None` while it runs (or if it was killed).
    pub finished: Option<i64>,
    /// `None` while it runs.
    pub ok: Option<bool>,
    /// The summary line it logged.
    pub summary: String,
    /// Each error it logged.
    pub errors: Vec<String>,
}

pub fn record_path(meta_root: &Path, job: Job) -> PathBuf {
    meta_root.join("jobs").join(format!("{job}.json"))
}

/// The last record of `job`, if it ever ran.
pub fn load(meta_root: &Path, job: Job) -> Result<Option<JobRecord>> {
    let p = record_path(meta_root, job);
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    let mut buf = Vec::new();
    f.take(MAX_RECORD + 1).read_to_end(&mut buf)?;
    anyhow::ensure!(
        buf.len() as u64 <= MAX_RECORD,
        "{} is larger than a job record can be",
        p.display()
    );
    let r = serde_json::from_slice(&buf)
        .with_context(|| format!("{} is not a job record", p.display()))?;
    Ok(Some(r))
}

/// Replace the record of `job` (atomically).
pub fn save(meta_root: &Path, job: Job, r: &JobRecord) -> Result<()> {
    let p = record_path(meta_root, job);
    let dir = p.parent().expect("jobs dir");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&serde_json::to_vec_pretty(r)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&p)
        .with_context(|| format!("cannot write {}", p.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_bad_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path(), Job::Send).unwrap(), None);
        let r = JobRecord {
            started: 10,
            finished: Some(20),
            ok: Some(false),
            summary: "s".into(),
            errors: vec!["e".into()],
        };
        save(d.path(), Job::Send, &r).unwrap();
        assert_eq!(load(d.path(), Job::Send).unwrap(), Some(r));
        assert_eq!(load(d.path(), Job::Monitor).unwrap(), None);
        std::fs::write(record_path(d.path(), Job::Monitor), "nope").unwrap();
        let e = load(d.path(), Job::Monitor).unwrap_err().to_string();
        assert!(e.ends_with("jobs/monitor.json is not a job record"), "{e}");
    }
}
