//! Reading a passphrase: from `--passphrase-fd N` or `--passphrase-file F`
//! (its first line), or else asked at the terminal (`/dev/tty`, echo off;
//! a new passphrase is asked twice). Never from the command line or the
//! environment, and never printed or logged.

use crate::passphrase::{Passphrase, PassphraseSource};
use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Longest passphrase read from a file or descriptor.
const MAX_PASSPHRASE: u64 = 4096;

#[derive(Args, Debug, Clone, Default)]
pub struct PassArgs {
    /// Read the passphrase from this open file descriptor (its first line).
    #[arg(long, value_name = "N", conflicts_with = "passphrase_file")]
    pub passphrase_fd: Option<u32>,
    /// Read the passphrase from this file (its first line).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl PassArgs {
    /// The passphrase source these options name; `unattended` forbids
    /// asking at the terminal.
    pub fn source(&self, unattended: bool) -> Passphrase {
        Passphrase(Arc::new(CliPassphrase {
            args: self.clone(),
            unattended,
        }))
    }
}

struct CliPassphrase {
    args: PassArgs,
    unattended: bool,
}

fn first_line(f: File, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut all = Zeroizing::new(Vec::new());
    f.take(MAX_PASSPHRASE + 1)
        .read_to_end(&mut all)
        .with_context(|| format!("cannot read the passphrase from {what}"))?;
    if all.len() as u64 > MAX_PASSPHRASE {
        bail!("the passphrase in {what} is longer than {MAX_PASSPHRASE} bytes");
    }
    let end = all.iter().position(|&b| b == b'\n').unwrap_or(all.len());
    Ok(Zeroizing::new(all[..end].to_vec()))
}

fn ask_tty(prompt: &str) -> Result<Zeroizing<Vec<u8>>> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context(
            "no terminal to ask the passphrase on: give --passphrase-fd or --passphrase-file",
        )?;
    let saved = tcgetattr(&tty).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).context("cannot turn off the terminal's echo")?;
    let res = (|| {
        (&tty).write_all(format!("{prompt}: ").as_bytes())?;
        let mut line = Zeroizing::new(Vec::new());
        BufReader::new(&tty)
            .take(MAX_PASSPHRASE)
            .read_until(b'\n', &mut line)?;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok::<_, std::io::Error>(line)
    })();
    let _ = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    res.context("cannot read the passphrase from the terminal")
}

impl PassphraseSource for CliPassphrase {
    fn passphrase(&self, prompt: &str, new: bool) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(n) = self.args.passphrase_fd {
            let what = format!("file descriptor {n}");
            let f = File::open(format!("/dev/fd/{n}"))
                .with_context(|| format!("cannot open {what} (--passphrase-fd)"))?;
            return first_line(f, &what);
        }
        if let Some(p) = &self.args.passphrase_file {
            let what = p.display().to_string();
            let f =
                File::open(p).with_context(|| format!("cannot open {what} (--passphrase-file)"))?;
            return first_line(f, &what);
        }
        if self.unattended {
            bail!("an unattended run (-u) cannot ask for the passphrase: give --passphrase-fd or --passphrase-file");
        }
        let first = ask_tty(&format!("Enter the {prompt}"))?;
        if new {
            let again = ask_tty("Enter it again")?;
            if *again != *first {
                bail!("the two passphrases differ; nothing was changed");
            }
        }
        Ok(first)
    }
}
