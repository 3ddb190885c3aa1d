//! The one wrapper that runs child processes (lvm, dmsetup, thin_delta, …).
//!
//! stderr is captured on its own thread so a chatty child cannot deadlock us
//! by filling a pipe; the exit status is always checked; a failure becomes an
//! error naming the command and quoting its stderr.

use anyhow::{anyhow, Context, Result};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;

/// Largest stderr kept for an error message.
const MAX_STDERR: u64 = 64 * 1024;

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn spawn(cmd: &mut Command) -> Result<(Child, JoinHandle<String>)> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow!(
                    "cannot run {what}: {} is not installed or not on PATH",
                    cmd.get_program().to_string_lossy()
                )
            } else {
                anyhow!("cannot run {what}: {e}")
            }
        })?;
    let mut err = child.stderr.take().expect("piped stderr");
    let h = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut err).take(MAX_STDERR).read_to_end(&mut buf);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        String::from_utf8_lossy(&buf).trim().to_string()
    });
    Ok((child, h))
}

fn finish(mut child: Child, h: JoinHandle<String>, what: &str) -> Result<()> {
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    let stderr = h.join().unwrap_or_default();
    if !status.success() {
        let tail = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        return Err(anyhow!("{what} failed ({status}){tail}"));
    }
    Ok(())
}

/// Run and return stdout (at most `max` bytes; more is an error).
pub fn run(cmd: &mut Command, max: u64) -> Result<Vec<u8>> {
    run_with(cmd, |out| {
        let mut buf = Vec::new();
        out.take(max + 1).read_to_end(&mut buf)?;
        anyhow::ensure!(buf.len() as u64 <= max, "output exceeds {max} bytes");
        Ok(buf)
    })
}

/// Run and hand stdout to `consume` as a stream (for large outputs such as
/// thin_delta's XML). The exit status is checked after `consume` returns.
pub fn run_with<T>(
    cmd: &mut Command,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let what = describe(cmd);
    let (mut child, h) = spawn(cmd)?;
    let mut out = child.stdout.take().expect("piped stdout");
    let res = consume(&mut out);
    // Drain so the child can exit even if we stopped reading early.
    let _ = std::io::copy(&mut out, &mut std::io::sink());
    drop(out);
    let status = finish(child, h, &what);
    match (res, status) {
        (Ok(v), Ok(())) => Ok(v),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e.context(format!("reading the output of {what}"))),
    }
}

/// Run and return the exit code with stderr (stdout, at most `max` bytes,
/// is discarded), for tools whose exit code is an answer (`qvm-check`).
/// Killed by a signal is an error.
pub fn run_code(cmd: &mut Command, max: u64) -> Result<(i32, String)> {
    let what = describe(cmd);
    let (mut child, h) = spawn(cmd)?;
    let mut out = child.stdout.take().expect("piped stdout");
    let _ = std::io::copy(&mut (&mut out).take(max), &mut std::io::sink());
    let _ = std::io::copy(&mut out, &mut std::io::sink());
    drop(out);
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    let stderr = h.join().unwrap_or_default();
    let code = status
        .code()
        .ok_or_else(|| anyhow!("{what} was killed ({status})"))?;
    Ok((code, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_quotes_stderr() {
        let e = run(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            100,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sh -c") && e.contains("oops") && e.contains("3"),
            "{e}"
        );
    }

    #[test]
    fn exit_codes_are_answers() {
        let (c, e) = run_code(Command::new("sh").args(["-c", "echo no >&2; exit 1"]), 10).unwrap();
        assert_eq!((c, e.as_str()), (1, "no"));
        assert_eq!(run_code(&mut Command::new("true"), 10).unwrap().0, 0);
        assert!(run_code(&mut Command::new("no-such-program-sparsebak"), 10).is_err());
    }

    #[test]
    fn missing_program_says_so() {
        let e = run(&mut Command::new("no-such-program-sparsebak"), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not installed"), "{e}");
    }

    #[test]
    fn output_is_bounded_and_big_stderr_does_not_deadlock() {
        let out = run(
            Command::new("sh").args(["-c", "head -c 300000 /dev/zero >&2; echo hi"]),
            100,
        )
        .unwrap();
        assert_eq!(out, b"hi\n");
        assert!(run(
            Command::new("sh").args(["-c", "head -c 1000 /dev/zero"]),
            100
        )
        .is_err());
    }
}
