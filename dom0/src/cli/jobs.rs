//! `sparsebak job`, `schedule` and `status`: the command-line side of
//! [`crate::jobs`] (what they print; the work is in the library).

use super::args::{Cli, Global, ScheduleAction, StatusArgs};
use super::print::Terminal;
use super::Done;
use crate::config::Config;
use crate::jobs::log::SysLog;
use crate::jobs::notify::DesktopNotifier;
use crate::jobs::run::{run_job, JobEnv};
use crate::jobs::schedule::{self, TimerInfo};
use crate::jobs::status::{status as job_status, Status};
use crate::jobs::systemd::RealSystemctl;
use crate::jobs::Job;
use crate::local_meta::Meta;
use crate::timefmt::{iso8601, now_unix};
use anyhow::Result;
use clap::Parser;

/// `sparsebak job JOB`: the command the job stands for, unattended, with
/// its run recorded, logged and (on failure) notified.
pub fn run(g: &Global, job: Job) -> Result<Done> {
    let meta = Meta::new(&g.meta_dir);
    let log = SysLog::connect();
    let notifier = DesktopNotifier::from_env();
    let env = JobEnv {
        meta_root: &meta.root,
        log: &log,
        notifier: &notifier,
    };
    let term = Terminal::new(true);
    run_job(&env, job, || {
        // The job's command exactly as `sparsebak JOB` parses it.
        let cli = Cli::try_parse_from(["sparsebak", job.name()])?;
        super::run_archive_command(g, Meta::new(&g.meta_dir), &cli.command, &term).map(|_| ())
    })?;
    Ok(Done::Ok)
}

pub fn schedule(action: Option<&ScheduleAction>) -> Result<Done> {
    let sc = RealSystemctl::from_env();
    match action {
        None => show(&sc, false),
        Some(ScheduleAction::Show { json }) => show(&sc, *json),
        Some(ScheduleAction::Enable { job }) => {
            let job = Job::from(*job);
            schedule::enable(&sc, job)?;
            println!("Enabled {}: {job} now runs from its timer.", job.timer());
            show(&sc, false)
        }
        Some(ScheduleAction::Disable { job }) => {
            let job = Job::from(*job);
            schedule::disable(&sc, job)?;
            println!(
                "Disabled {}: {job} no longer runs from its timer.",
                job.timer()
            );
            Ok(Done::Ok)
        }
        Some(ScheduleAction::SetInterval { job, interval }) => {
            let job = Job::from(*job);
            let v = schedule::set_interval(&sc, job, interval)?;
            println!("{} now runs {}.", job.timer(), interval_words(job, &v));
            Ok(Done::Ok)
        }
    }
}

fn interval_words(job: Job, v: &str) -> String {
    match job {
        Job::Monitor => format!("every {v}"),
        Job::Send => format!("on calendar event \"{v}\""),
    }
}

fn show(sc: &RealSystemctl, json: bool) -> Result<Done> {
    let infos: Vec<TimerInfo> = Job::ALL
        .iter()
        .map(|j| schedule::info(sc, *j))
        .collect::<Result<_>>()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(Done::Ok);
    }
    for i in &infos {
        println!("{}", timer_line(i));
    }
    Ok(Done::Ok)
}

fn timer_line(i: &TimerInfo) -> String {
    let job = if i.job == "send" {
        Job::Send
    } else {
        Job::Monitor
    };
    format!(
        "{:<8} {} ({}{}), {}, next run: {}",
        i.job,
        i.timer,
        if i.state.is_empty() {
            "unknown"
        } else {
            &i.state
        },
        if i.active == "active" { ", active" } else { "" },
        interval_words(job, &i.interval)
            + if i.overridden {
                " (set with schedule set-interval)"
            } else {
                ""
            },
        i.next.as_deref().unwrap_or("none")
    )
}

pub fn status(meta: &Meta, a: &StatusArgs) -> Result<Done> {
    let config = Config::load(&meta.root)?;
    let st = job_status(
        meta,
        &config,
        &RealSystemctl::from_env(),
        now_unix(),
        a.max_age,
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print_status(&st);
    }
    Ok(Done::Ok)
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 0 => "in the future".into(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h {} min ago", s / 3600, s % 3600 / 60),
        s => format!("{} days ago", s / 86_400),
    }
}

fn print_status(st: &Status) {
    println!("Jobs:");
    for j in &st.jobs {
        let timer = match &j.timer {
            Some(t) => timer_line(t),
            None => format!("{:<8} timer state unknown (no systemctl)", j.job),
        };
        println!("  {timer}");
        let last = match &j.last {
            None => "never run".to_string(),
            Some(r) => match (r.ok, r.finished) {
                (Some(true), Some(f)) => format!("succeeded {}", iso8601(f)),
                (Some(false), Some(f)) => format!(
                    "FAILED {}: {}",
                    iso8601(f),
                    r.errors.first().map(String::as_str).unwrap_or("")
                ),
                _ => format!(
                    "started {}, not finished (running, or killed)",
                    iso8601(r.started)
                ),
            },
        };
        println!("           last run: {last}");
    }
    println!(
        "Volumes (warning when the newest session is older than {} h):",
        st.max_age_hours
    );
    for v in &st.volumes {
        let newest = match (&v.newest, v.age_seconds) {
            (Some(n), Some(a)) => format!("newest session {n}, {}", ago(a)),
            _ => "no session yet".into(),
        };
        let warn = if v.stale {
            "   WARNING: out of date"
        } else {
            ""
        };
        let off = if v.enabled { "" } else { " (disabled)" };
        println!("  {}{off}: {newest}{warn}", v.volume);
    }
}
