//! `sparsebak schedule`: show, enable and disable the job timers and change
//! how often they run, without editing the shipped units: an interval is a
//! drop-in file `/etc/systemd/system/sparsebak-JOB.timer.d/50-sparsebak-interval.conf`
//! that resets the timer's setting and sets the new one; `default` removes it.
//! Intervals follow a strict grammar, so nothing but a checked value is
//! written into a unit file.

use super::systemd::{show, Systemctl};
use super::Job;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::PathBuf;

pub const DROP_IN: &str = "50-sparsebak-interval.conf";

/// One timer as `schedule show` reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TimerInfo {
    pub job: String,
    pub timer: String,
    /// `enabled`, `disabled`, ... (systemd's UnitFileState).
    pub state: String,
    /// `active` while the timer is armed.
    pub active: String,
    /// The interval in force: the override, else the unit's default.
    pub interval: String,
    pub overridden: bool,
    /// systemd's next elapse time, if it has one.
    pub next: Option<String>,
}

pub fn drop_in_path(sc: &dyn Systemctl, job: Job) -> PathBuf {
    sc.unit_dir()
        .join(format!("{}.d", job.timer()))
        .join(DROP_IN)
}

/// The interval an override sets, if there is one.
fn overridden(sc: &dyn Systemctl, job: Job) -> Option<String> {
    let text = std::fs::read_to_string(drop_in_path(sc, job)).ok()?;
    let key = format!("{}=", job.timer_key());
    text.lines()
        .filter_map(|l| l.strip_prefix(&key))
        .rfind(|v| !v.is_empty())
        .map(String::from)
}

pub fn info(sc: &dyn Systemctl, job: Job) -> Result<TimerInfo> {
    let p = show(
        sc,
        &job.timer(),
        &["UnitFileState", "ActiveState", "NextElapseUSecRealtime"],
    )?;
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let ov = overridden(sc, job);
    let next = get("NextElapseUSecRealtime");
    Ok(TimerInfo {
        job: job.name().into(),
        timer: job.timer(),
        state: get("UnitFileState"),
        active: get("ActiveState"),
        interval: ov.clone().unwrap_or_else(|| job.default_interval().into()),
        overridden: ov.is_some(),
        next: (!next.is_empty() && next != "n/a" && next != "0").then_some(next),
    })
}

pub fn enable(sc: &dyn Systemctl, job: Job) -> Result<()> {
    sc.run(&["enable", "--now", &job.timer()])
        .with_context(|| format!("cannot enable {}", job.timer()))
        .map(|_| ())
}

pub fn disable(sc: &dyn Systemctl, job: Job) -> Result<()> {
    sc.run(&["disable", "--now", &job.timer()])
        .with_context(|| format!("cannot disable {}", job.timer()))
        .map(|_| ())
}

/// Check an interval for `job`; the value to write.
pub fn parse_interval(job: Job, spec: &str) -> Result<String> {
    match job {
        Job::Monitor => parse_period(spec),
        Job::Send => parse_calendar(spec),
    }
}

/// A period: N followed by `min` or `h`, from 1 min to 24 h.
fn parse_period(spec: &str) -> Result<String> {
    let (n, unit) = spec.split_at(
        spec.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(spec.len()),
    );
    let mins = match (n.parse::<u64>(), unit) {
        (Ok(n), "min" | "m") if n <= 1440 => n,
        (Ok(n), "h") if n <= 24 => n * 60,
        _ => {
            bail!("invalid monitor interval {spec:?}: expected minutes or hours, e.g. 10min or 1h")
        }
    };
    if !(1..=1440).contains(&mins) {
        bail!("monitor interval {spec:?} is out of range: 1min to 24h");
    }
    Ok(format!("{mins}min"))
}

/// A calendar event: hourly, daily, weekly, monthly, HH:MM (every day) or
/// DAY HH:MM (weekly), DAY one of Mon..Sun.
fn parse_calendar(spec: &str) -> Result<String> {
    const WORDS: [&str; 4] = ["hourly", "daily", "weekly", "monthly"];
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    if WORDS.contains(&spec) {
        return Ok(spec.into());
    }
    let (day, time) = match spec.split_once(' ') {
        Some((d, t)) if DAYS.contains(&d) => (Some(d), t),
        None => (None, spec),
        _ => bail!(bad_calendar(spec)),
    };
    let hm = time
        .split_once(':')
        .filter(|(h, m)| h.len() == 2 && m.len() == 2)
        .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
        .filter(|&(h, m)| {
            h < 24 && m < 60 && time.bytes().all(|b| b.is_ascii_digit() || b == b':')
        });
    let Some((h, m)) = hm else {
        bail!(bad_calendar(spec));
    };
    Ok(match day {
        Some(d) => format!("{d} *-*-* {h:02}:{m:02}:00"),
        None => format!("*-*-* {h:02}:{m:02}:00"),
    })
}

fn bad_calendar(spec: &str) -> String {
    format!(
        "invalid send schedule {spec:?}: expected hourly, daily, weekly, monthly, HH:MM (every day) or DAY HH:MM (DAY Mon..Sun)"
    )
}

/// Set (or with `default`, reset) how often `job` runs; returns the value
/// now in force.
pub fn set_interval(sc: &dyn Systemctl, job: Job, spec: &str) -> Result<String> {
    let path = drop_in_path(sc, job);
    let value = if spec == "default" {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        job.default_interval().to_string()
    } else {
        let v = parse_interval(job, spec)?;
        let dir = path.parent().expect("drop-in dir");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let k = job.timer_key();
        let text = format!(
            "# Written by `sparsebak schedule set-interval {job} ...`; \
             `sparsebak schedule set-interval {job} default` removes it.\n[Timer]\n{k}=\n{k}={v}\n"
        );
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        v
    };
    sc.run(&["daemon-reload"])?;
    let active = show(sc, &job.timer(), &["ActiveState"])?;
    if active.get("ActiveState").map(String::as_str) == Some("active") {
        sc.run(&["restart", &job.timer()])?;
    }
    Ok(value)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
