//! Messages on stderr that can never end the agent.
//!
//! std's `eprintln!`/`println!` panic when the stream is gone ("failed
//! printing to stderr: Broken pipe", exit 101): seen under real qrexec when
//! dom0's qrexec-client died and took the service's stderr with it. A lost
//! stderr must not turn a clean shutdown (or an interrupted prune being
//! completed) into a panic, so every message goes through [`say`], which
//! drops what it cannot write.

use std::io::Write;

/// Write one line to stderr, prefixed with `sparsebak-agent: `; a closed or
/// failing stderr is ignored.
pub fn say(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "sparsebak-agent: {msg}");
}

/// Write one line to stdout (only for `--version`/`--help`, never while
/// serving); a closed stdout is ignored.
pub fn print(msg: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{msg}").and_then(|_| out.flush());
}
