//! Scheduled jobs: the systemd timers in `systemd/` run `sparsebak job
//! monitor` and `sparsebak job send`; this module is what such a run adds to
//! the plain command, and what `sparsebak schedule` and `sparsebak status`
//! show and change.
//!
//! * [`run`]: one job run: a record of it in the meta dir ([`state`]), one
//!   summary line in syslog per run and one per error ([`log`]), a desktop
//!   notification to the logged-in user when it failed ([`notify`]).
//! * [`schedule`]: enable, disable and re-time the timers through
//!   `systemctl` (behind [`systemd::Systemctl`]) and drop-in files, never
//!   by editing the shipped units.
//! * [`status`]: each job's last run, result and next run; each volume's
//!   newest session and its age.

pub mod log;
pub mod notify;
pub mod run;
pub mod schedule;
pub mod state;
pub mod status;
pub mod systemd;

use std::fmt;

/// A scheduled job: the command its timer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Job {
    /// `monitor`: harvest LVM thin changes, every few minutes.
    Monitor,
    /// `send`: back up every enabled volume, daily.
    Send,
}

impl Job {
    pub const ALL: [Job; 2] = [Job::Monitor, Job::Send];

    pub fn name(self) -> &'static str {
        match self {
            Job::Monitor => "monitor",
            Job::Send => "send",
        }
    }

    /// The systemd timer unit that starts it.
    pub fn timer(self) -> String {
        format!("sparsebak-{}.timer", self.name())
    }

    /// The timer setting `schedule set-interval` overrides: a period after
    /// the last run for monitor, a calendar event for send.
    pub fn timer_key(self) -> &'static str {
        match self {
            Job::Monitor => "OnUnitActiveSec",
            Job::Send => "OnCalendar",
        }
    }

    /// What the shipped unit says, shown when no override exists.
    pub fn default_interval(self) -> &'static str {
        match self {
            Job::Monitor => "10min",
            Job::Send => "daily",
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
