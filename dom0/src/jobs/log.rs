//! Where job runs are logged: syslog, identifier `sparsebak`, so
//! `journalctl -t sparsebak` shows one summary line per run and one line
//! per error. (The services' own stdout and stderr go to the journal under
//! `sparsebak-monitor`/`sparsebak-send`, set in their units, so they do not
//! mix with these lines.)

use std::sync::Mutex;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// The identifier of every line.
pub const IDENT: &str = "sparsebak";
/// Another syslog socket than `/dev/log` (for the test suites).
pub const SOCKET_ENV: &str = "SPARSEBAK_SYSLOG_SOCKET";

/// What a job run logs.
pub trait JobLog {
    fn info(&self, line: &str);
    fn error(&self, line: &str);
}

/// Syslog through `/dev/log` (journald's socket in dom0). If no syslog
/// socket can be reached, lines are dropped: a job never fails for that.
pub struct SysLog(Mutex<Option<Logger<LoggerBackend, Formatter3164>>>);

impl SysLog {
    pub fn connect() -> SysLog {
        let f = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: IDENT.into(),
            pid: std::process::id(),
        };
        let logger = match std::env::var_os(SOCKET_ENV) {
            Some(p) => syslog::unix_custom(f, p),
            None => syslog::unix(f),
        };
        SysLog(Mutex::new(logger.ok()))
    }
}

impl JobLog for SysLog {
    fn info(&self, line: &str) {
        if let Some(l) = self.0.lock().expect("syslog lock").as_mut() {
            let _ = l.info(line);
        }
    }
    fn error(&self, line: &str) {
        if let Some(l) = self.0.lock().expect("syslog lock").as_mut() {
            let _ = l.err(line);
        }
    }
}

/// Collects lines, for tests.
#[derive(Default)]
pub struct MemLog(pub Mutex<Vec<String>>);

impl JobLog for MemLog {
    fn info(&self, line: &str) {
        self.0.lock().unwrap().push(format!("info: {line}"));
    }
    fn error(&self, line: &str) {
        self.0.lock().unwrap().push(format!("err: {line}"));
    }
}
