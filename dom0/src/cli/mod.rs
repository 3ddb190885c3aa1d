//! The `sparsebak` command: parse, dispatch to the library, print reports,
//! map the outcome to an exit code (the one place exit codes are decided).
//!
//! Exit codes: 0 success; 1 failure (message on stderr); 2 usage error;
//! 3 verify found damaged or missing chunks (arch-deduplicate: left
//! duplicates alone because a file is damaged or missing); 4 diff found
//! differences.

pub mod args;
mod commands;
mod dedup;
mod legacy;
mod prune;
mod received;
mod recover;
mod remove;
mod thin;
mod ui;

use clap::Parser;
use std::process::ExitCode;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_DAMAGED: u8 = 3;
pub const EXIT_DIFFERS: u8 = 4;

/// Outcome of a command that did not fail outright.
pub enum Done {
    Ok,
    Damaged,
    /// diff found differences (without --remap).
    Differs,
}

pub fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { EXIT_USAGE } else { 0 });
        }
    };
    ui::init_logging();
    match commands::run(cli) {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Damaged) => ExitCode::from(EXIT_DAMAGED),
        Ok(Done::Differs) => ExitCode::from(EXIT_DIFFERS),
        Err(e) => {
            eprintln!("sparsebak: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
