//! The `sparsebak` command: parse, call one operation of [`crate::ops`],
//! print its report, map the outcome to an exit code (the one place exit
//! codes are decided).
//!
//! Exit codes: 0 success; 1 failure (message on stderr); 2 usage error;
//! 3 verify found damaged or missing chunks (arch-deduplicate: left
//! duplicates alone because a file is damaged or missing; arch-check: found
//! problems); 4 diff found differences.

pub mod args;
mod jobs;
mod passphrase;
mod print;
mod print_qubes;
mod ui;

use crate::config::Config;
use crate::dest::TransportOptions;
use crate::local_meta::Meta;
use crate::lvm::cli::LvmCli;
use crate::ops::context::{Ctx, Transports};
use crate::ops::legacy::Legacy;
use crate::ops::{self, send::SendOptions};
use crate::qubes::QvmCli;
use anyhow::Result;
use args::{Cli, Command, Global};
use clap::{CommandFactory, Parser};
use print::Terminal;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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
    /// restore-service: its own exit code (crate::restore_service).
    Exit(u8),
}

pub fn main() -> ExitCode {
    crate::alloc::tune();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            if let Some(hint) = args::moved_option_hint(std::env::args().skip(1)) {
                eprintln!("{hint}");
            }
            return ExitCode::from(if usage { EXIT_USAGE } else { 0 });
        }
    };
    ui::init_logging();
    match run(cli) {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Damaged) => ExitCode::from(EXIT_DAMAGED),
        Ok(Done::Differs) => ExitCode::from(EXIT_DIFFERS),
        Ok(Done::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("sparsebak: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> Result<Done> {
    let g = &cli.global;
    let meta = Meta::new(&g.meta_dir);
    let term = Terminal::new(g.unattended);
    match &cli.command {
        Command::Version => {
            println!("sparsebak {}", env!("CARGO_PKG_VERSION"));
            Ok(Done::Ok)
        }
        Command::Completions { shell } => {
            // Into a buffer: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "sparsebak", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(Done::Ok)
        }
        Command::ArchInit(a) => {
            let r = ops::arch_init::arch_init(
                &meta,
                &Transports::from_env(),
                &a.options(g.unattended),
            )?;
            print::initialised(&r);
            Ok(Done::Ok)
        }
        Command::ArchRecover(a) => {
            let o = ops::arch_recover::RecoverOptions {
                location: a.location.location(),
                passphrase: Some(a.pass.source(g.unattended)),
            };
            let r = ops::arch_recover::arch_recover(
                &meta,
                TransportOptions::from_env(),
                &o,
                &print::RecoverPrinter,
            )?;
            print::recovered(&meta, &r)
        }
        Command::Job { job } => jobs::run(g, (*job).into()),
        Command::Schedule { action } => jobs::schedule(action.as_ref()),
        Command::Status(a) => jobs::status(&meta, a),
        Command::RestoreService => Ok(restore_service(meta)),
        cmd => run_archive_command(g, meta, cmd, &term),
    }
}

/// A command that works on the configured archive, under the meta dir's lock.
fn run_archive_command(g: &Global, meta: Meta, cmd: &Command, term: &Terminal) -> Result<Done> {
    let legacy = cmd.legacy();
    if ops::legacy::applies(&meta.root, legacy.is_some(), legacy == Some(true))? {
        return run_legacy(g, meta, cmd, term);
    }
    let _lock = meta.lock_wait(Duration::from_secs(g.wait))?;
    let ctx = Ctx {
        config: Config::load(&meta.root)?,
        meta,
        connector: &Transports::from_env(),
        lvm: &LvmCli,
    };
    run_on_archive(ctx, cmd, term)
}

/// `restore-service`: one request of the backup VM (crate::restore_service).
/// The answer goes to stdout, which qrexec hands to the VM; dom0 services'
/// stderr never reaches the VM.
fn restore_service(meta: Meta) -> Done {
    use crate::restore_service::{backend::LocalBackend, serve};
    let caller = std::env::var("QREXEC_REMOTE_DOMAIN").ok();
    let arg = std::env::var("QREXEC_SERVICE_ARGUMENT").ok();
    let log = crate::jobs::log::SysLog::connect();
    let connector = Transports::from_env();
    let qvm = QvmCli::default();
    let reply = serve(
        caller.as_deref(),
        arg.as_deref(),
        || {
            Ok(Box::new(LocalBackend::open(
                meta, &connector, &LvmCli, &qvm,
            )?))
        },
        &log,
    );
    let mut text = reply.text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = std::io::stdout().write_all(text.as_bytes());
    Done::Exit(reply.exit)
}

/// The commands on an archive of our own, configured in the meta dir.
fn run_on_archive(mut ctx: Ctx, cmd: &Command, term: &Terminal) -> Result<Done> {
    match cmd {
        Command::Add(a) if a.qube.is_some() => {
            let o = ops::qube_add::AddQubeOptions {
                qube: a.qube.clone().unwrap_or_default(),
            };
            print_qubes::added_qube(&ops::qube_add::add_qube(&mut ctx, &QvmCli::default(), &o)?);
            Ok(Done::Ok)
        }
        Command::Add(a) => {
            let o = ops::add::AddOptions {
                volume: a.volume.clone().unwrap_or_default(),
                path: a.path.clone(),
            };
            print::added(&ops::add::add(&mut ctx, &o)?);
            Ok(Done::Ok)
        }
        Command::List(a) => {
            let o = ops::list::ListOptions {
                volume: a.volume.clone(),
            };
            print::listing(&ops::list::list(&ctx, &o)?, a.json)
        }
        Command::Send(a) => {
            let o = SendOptions {
                volumes: a.volumes.clone(),
                tarfile: a.tarfile,
                dedup: a.dedup,
                no_resume: a.no_resume,
            };
            ops::qube_send::send(&mut ctx, &QvmCli::default(), term, &o)?;
            Ok(Done::Ok)
        }
        Command::Monitor { volumes } => {
            let o = ops::monitor::MonitorOptions {
                volumes: volumes.clone(),
            };
            ops::monitor::monitor(&ctx, term, &o)?;
            Ok(Done::Ok)
        }
        Command::Diff(a) => {
            let o = ops::diff::DiffOptions {
                volume: a.volume.clone(),
                remap: a.remap,
                session: a.session.clone(),
            };
            Ok(print::diff(&ops::diff::diff(&ctx, term, &o)?))
        }
        Command::Receive(a) => {
            print::received(&ops::receive::receive(&ctx, term, &a.options())?, "");
            Ok(Done::Ok)
        }
        Command::Verify(a) => Ok(print::verified(
            &ops::verify::verify(&ctx, term, &a.options())?,
            "",
        )),
        Command::RestoreQube(a) => {
            let r =
                ops::restore_qube::restore_qube(&mut ctx, &QvmCli::default(), term, &a.options())?;
            print_qubes::restored(&r);
            Ok(Done::Ok)
        }
        Command::Delete { volume } => {
            let o = ops::delete::DeleteOptions {
                volume: volume.clone(),
            };
            let vol = ops::delete::delete(&mut ctx, term, &o)?;
            println!("Volume {vol} deleted from the archive and the configuration.");
            Ok(Done::Ok)
        }
        Command::Prune(a) => {
            ops::prune::prune(&ctx, term, &a.options())?;
            Ok(Done::Ok)
        }
        Command::ArchDelete => {
            print::arch_deleted(&ops::arch_delete::arch_delete(&ctx, term)?);
            Ok(Done::Ok)
        }
        Command::ArchCheck(a) => {
            let o = ops::arch_check::CheckOptions { data: a.data };
            print::checked(&ops::arch_check::arch_check(&ctx, term, &o)?, a.json)
        }
        Command::ArchPasswd(p) => {
            let o = ops::arch_passwd::PasswdOptions {
                passphrase: p.source(term.unattended()),
            };
            ops::arch_passwd::arch_passwd(&ctx, &o)?;
            println!("The archive's passphrase was changed.");
            Ok(Done::Ok)
        }
        Command::ArchDeduplicate => Ok(print::deduplicated(&ops::dedup::arch_deduplicate(
            &ctx, term,
        )?)),
        // Version, completions, arch-init, arch-recover, job, schedule,
        // status, restore-service.
        other => unreachable!("handled by run: {other:?}"),
    }
}

/// list, receive and verify on a sparsebak 0.2 archive.
fn run_legacy(g: &Global, meta: Meta, cmd: &Command, term: &Terminal) -> Result<Done> {
    let _lock = meta.lock_wait(Duration::from_secs(g.wait))?;
    let connector = Transports::from_env();
    let l = Legacy::load(meta, &connector, &LvmCli)?;
    let label = format!(" ({} archive)", ops::legacy::LABEL);
    match cmd {
        Command::List(a) => {
            print::legacy_listing(&ops::legacy::list(&l, a.volume.as_deref())?, a.json)
        }
        Command::Receive(a) => {
            print::received(&ops::legacy::receive(&l, term, &a.options())?, &label);
            Ok(Done::Ok)
        }
        Command::Verify(a) => Ok(print::verified(
            &ops::legacy::verify(&l, term, &a.options())?,
            &label,
        )),
        _ => unreachable!("ops::legacy::applies admits only list, receive and verify"),
    }
}
