//! Desktop notifications for failed job runs, as Qubes' own updater shows
//! them: `notify-send` in the session of each logged-in user. A job runs as
//! root from a timer, so it finds the users' session buses under
//! `/run/user/UID/bus` and runs `runuser -u USER -- env
//! DBUS_SESSION_BUS_ADDRESS=unix:path=... notify-send ...` for each; run by
//! a user, it calls `notify-send` in that user's own session. No session,
//! no notification (the syslog line stays).

use crate::process;
use anyhow::Result;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::Command;

pub trait Notifier {
    /// Tell the logged-in user(s); returns how many were told.
    fn notify(&self, title: &str, body: &str) -> Result<usize>;
}

pub struct DesktopNotifier {
    /// `/run/user` (`SPARSEBAK_USER_RUNDIR` for tests).
    pub rundir: PathBuf,
    /// `runuser` (`SPARSEBAK_RUNUSER`).
    pub runuser: PathBuf,
    /// `notify-send` (`SPARSEBAK_NOTIFY_SEND`).
    pub notify_send: PathBuf,
}

impl DesktopNotifier {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| PathBuf::from(std::env::var_os(k).unwrap_or_else(|| d.into()));
        DesktopNotifier {
            rundir: var("SPARSEBAK_USER_RUNDIR", "/run/user"),
            runuser: var("SPARSEBAK_RUNUSER", "runuser"),
            notify_send: var("SPARSEBAK_NOTIFY_SEND", "notify-send"),
        }
    }

    /// `(user name, bus socket)` of every session bus under the run dir.
    fn sessions(&self) -> Vec<(String, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(&self.rundir) else {
            return vec![];
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(uid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let bus = e.path().join("bus");
            let is_socket = std::fs::metadata(&bus).is_ok_and(|m| m.file_type().is_socket());
            let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
            if let (true, Some(u)) = (is_socket, user) {
                out.push((u.name, bus));
            }
        }
        out.sort();
        out
    }

    fn args(title: &str, body: &str) -> Vec<String> {
        [
            "--app-name=sparsebak",
            "--urgency=critical",
            "--icon=dialog-error",
            "--",
            title,
            body,
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, title: &str, body: &str) -> Result<usize> {
        if !nix::unistd::geteuid().is_root() {
            process::run(
                Command::new(&self.notify_send).args(Self::args(title, body)),
                4096,
            )?;
            return Ok(1);
        }
        let mut told = 0;
        let mut last_err = None;
        for (user, bus) in self.sessions() {
            let mut cmd = Command::new(&self.runuser);
            cmd.args(["-u", &user, "--", "env"])
                .arg(format!(
                    "DBUS_SESSION_BUS_ADDRESS=unix:path={}",
                    bus.display()
                ))
                .arg(&self.notify_send)
                .args(Self::args(title, body));
            match process::run(&mut cmd, 4096) {
                Ok(_) => told += 1,
                Err(e) => last_err = Some(e),
            }
        }
        match (told, last_err) {
            (0, Some(e)) => Err(e),
            _ => Ok(told),
        }
    }
}

/// Records notifications, for tests.
#[derive(Default)]
pub struct MemNotifier(pub std::sync::Mutex<Vec<(String, String)>>);

impl Notifier for MemNotifier {
    fn notify(&self, title: &str, body: &str) -> Result<usize> {
        self.0.lock().unwrap().push((title.into(), body.into()));
        Ok(1)
    }
}
