//! `sparsebak-agent`: serves one archive session over stdin/stdout.
//! Run by `sparsebak` directly (internal:), through ssh, or through the
//! qrexec service `qubes.SparsebakStore`. It never runs a shell command.

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
            println!("sparsebak-agent {}{hooks}", sparsebak_agent::VERSION);
            return ExitCode::SUCCESS;
        }
        Some("--help") | Some("-h") => {
            println!("sparsebak-agent: speaks the sparsebak protocol on stdin/stdout. Started by sparsebak; not for interactive use.");
            return ExitCode::SUCCESS;
        }
        Some(other) if other.starts_with('-') => {
            eprintln!("sparsebak-agent: unknown option {other:?}");
            return ExitCode::from(2);
        }
        _ => {}
    }
    let (stdin, stdout) = match sparsebak_agent::pipe::stdio() {
        Ok(io) => io,
        Err(e) => {
            eprintln!("sparsebak-agent: {e}");
            return ExitCode::from(1);
        }
    };
    match sparsebak_agent::serve(stdin, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sparsebak-agent: {e}");
            ExitCode::from(1)
        }
    }
}
