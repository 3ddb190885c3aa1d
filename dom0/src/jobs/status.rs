//! `sparsebak status`: each job's last run, result and next run, and each
//! configured volume's newest session with its age; a volume whose newest
//! session is older than the threshold (or that has none) is flagged.

use super::schedule::{self, TimerInfo};
use super::state::{self, JobRecord};
use super::systemd::Systemctl;
use super::Job;
use crate::config::Config;
use crate::local_meta::Meta;
use crate::timefmt::unix_from_parts;
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub last: Option<JobRecord>,
    /// The timer, if systemctl could say (`None` without systemd).
    pub timer: Option<TimerInfo>,
}

#[derive(Debug, Serialize)]
pub struct VolumeStatus {
    pub volume: String,
    pub enabled: bool,
    /// `YYYYMMDD-HHMMSS` (UTC) of the newest session.
    pub newest: Option<String>,
    pub age_seconds: Option<i64>,
    /// No session, or the newest is older than the threshold.
    pub stale: bool,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub jobs: Vec<JobStatus>,
    pub volumes: Vec<VolumeStatus>,
    pub max_age_hours: u64,
}

pub fn status(
    meta: &Meta,
    config: &Config,
    sc: &dyn Systemctl,
    now: i64,
    max_age_hours: u64,
) -> Result<Status> {
    let mut jobs = Vec::new();
    for job in Job::ALL {
        jobs.push(JobStatus {
            job: job.name().into(),
            last: state::load(&meta.root, job)?,
            timer: schedule::info(sc, job).ok(),
        });
    }
    let limit = (max_age_hours as i64).saturating_mul(3600);
    let mut volumes = Vec::new();
    for (vol, e) in &config.volumes {
        let newest = meta.chain(vol)?.pop();
        let age = newest
            .as_ref()
            .map(|s| now - unix_from_parts(s.name.parts()));
        volumes.push(VolumeStatus {
            volume: vol.to_string(),
            enabled: e.enabled,
            newest: newest.map(|s| s.name.timestamp().to_string()),
            age_seconds: age,
            stale: e.enabled && age.is_none_or(|a| a > limit),
        });
    }
    Ok(Status {
        jobs,
        volumes,
        max_age_hours,
    })
}
