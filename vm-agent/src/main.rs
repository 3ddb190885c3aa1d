//! `sparsebak-agent`: serves one archive session over stdin/stdout.
//! Run by `sparsebak` directly (internal:), through ssh, or through the
//! qrexec service `qubes.SparsebakStore`. It never runs a shell command.
//! Nothing here panics on a closed stdout or stderr (`say`), and a reply
//! that cannot be written for `SPARSEBAK_AGENT_STALL_SECS` (default 600)
//! ends the agent (`stall`).

use sparsebak_agent::say::{print, say};
use sparsebak_agent::stall;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("version") => {
            // A test build says so: the dom0 suites check they drive one.
            let hooks = if cfg!(feature = "test-hooks") {
                " (test build: fault-injection hooks on)"
            } else {
                ""
            };
            print(format_args!(
                "sparsebak-agent {}{hooks}",
                sparsebak_agent::VERSION
            ));
            return ExitCode::SUCCESS;
        }
        Some("--help") | Some("-h") => {
            print(format_args!("sparsebak-agent: speaks the sparsebak protocol on stdin/stdout. Started by sparsebak; not for interactive use."));
            return ExitCode::SUCCESS;
        }
        Some(other) if other.starts_with('-') => {
            say(format_args!("unknown option {other:?}"));
            return ExitCode::from(2);
        }
        _ => {}
    }
    let (stdin, stdout) = match sparsebak_agent::pipe::stdio() {
        Ok(io) => io,
        Err(e) => {
            say(format_args!("{e}"));
            return ExitCode::from(1);
        }
    };
    let progress = stall::Progress::new();
    let limit = stall::limit_from_env();
    stall::watch(progress.clone(), limit, |blocked| {
        say(format_args!(
            "no reply could be written to sparsebak for {} s (is it gone?): giving up",
            blocked.as_secs()
        ));
        // Ends every thread; the kernel closes the chunk files and the
        // archive lock with the process.
        std::process::exit(1);
    });
    match sparsebak_agent::serve(stdin, stall::StallWriter::new(stdout, progress)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("{e}"));
            ExitCode::from(1)
        }
    }
}
