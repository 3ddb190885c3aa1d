//! Terminal concerns: logging to stderr, prompts, progress bars.

use crate::progress::{Bar, Progress, Silent};
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            match r.level() {
                log::Level::Error => eprintln!("sparsebak: error: {}", r.args()),
                log::Level::Warn => eprintln!("sparsebak: warning: {}", r.args()),
                _ => eprintln!("{}", r.args()),
            }
        }
    }
    fn flush(&self) {}
}

pub fn init_logging() {
    static LOGGER: StderrLogger = StderrLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Ask a yes/no question; only "y" or "yes" is yes. Without a terminal the
/// question cannot be asked, so the answer is an error asking for -u.
pub fn confirm(question: &str, unattended: bool) -> Result<bool> {
    if unattended {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} — no terminal to ask on; pass -u to proceed without asking");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub fn progress(unattended: bool) -> Box<dyn Progress> {
    if !unattended && std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Silent)
    }
}

pub fn mb_per_s(bytes: u64, secs: f64) -> String {
    format!("{:.1} MB/s", bytes as f64 / 1e6 / secs.max(1e-3))
}

/// Ask for a typed answer at a terminal; -u never skips this question.
pub fn confirm_typed(question: &str, accepted: &[&str]) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("arch-delete asks for confirmation at a terminal, even with -u, and there is none; nothing was deleted");
    }
    eprint!("{question} ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(accepted.contains(&line.trim()))
}
