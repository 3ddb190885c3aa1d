//! Command-line syntax. Each command has its own options; only `-u`,
//! `--wait` and `--meta-dir` are global (accepted before or after the
//! command). Options are written after the command they belong to.

use crate::ops;
use crate::ops::resolve::Location;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const DEFAULT_META_DIR: &str = "/var/lib/sparsebak";

#[derive(Parser, Debug)]
#[command(
    name = "sparsebak",
    version,
    about = "Fast incremental backups of disk volumes (Qubes OS dom0, Linux LVM)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Args, Debug, Default)]
pub struct Global {
    /// No prompts, no progress bars (for timers and scripts).
    #[arg(short = 'u', long, global = true)]
    pub unattended: bool,
    /// Wait up to SECONDS for another sparsebak run (e.g. a timer's monitor)
    /// to finish instead of failing at once.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 0)]
    pub wait: u64,
    /// Local metadata directory.
    #[arg(long, global = true, env = "SPARSEBAK_META_DIR", default_value = DEFAULT_META_DIR)]
    pub meta_dir: PathBuf,
}

/// Where the archive is (arch-init, arch-recover).
#[derive(Args, Debug)]
pub struct LocationArgs {
    /// internal:/MNT, ssh://[user@]host[:port]/MNT, qubes://VM/MNT, qubes-ssh://VM|[user@]host/MNT;
    /// s3:STORE in place of /MNT for an S3 bucket the agent's STORE.conf names.
    #[arg(long)]
    pub dest: Option<String>,
    /// Directory under the destination mountpoint.
    #[arg(long)]
    pub subdir: Option<String>,
    /// VG/POOL for LVM thin volumes, reflink:/PATH for image files on Btrfs/XFS
    /// (a Qubes file-reflink pool) with change tracking, or dir:/PATH for image files.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// zstd[:1-19] (default zstd:3) or zlib[:0-9].
    #[arg(long)]
    pub compression: Option<String>,
    /// Chunk size as a multiple of 64 KiB (1-256, default 1).
    #[arg(long)]
    pub chunk_factor: Option<u64>,
    /// Encrypt and authenticate chunks and metadata (format 2, the
    /// default); `off` makes a format 1 archive.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = ["on", "off"])]
    pub encrypt: String,
    #[command(flatten)]
    pub pass: super::passphrase::PassArgs,
}

#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub location: LocationArgs,
    /// An encrypted archive's passphrase (else asked at the terminal).
    #[command(flatten)]
    pub pass: super::passphrase::PassArgs,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[arg(required_unless_present = "qube", conflicts_with = "qube")]
    pub volume: Option<String>,
    /// The image file or block device holding the volume.
    #[arg(long, conflicts_with = "qube")]
    pub path: Option<PathBuf>,
    /// Add a Qubes qube by name: its private volume (and root for
    /// templates and standalones) and its settings, found with qvm-* tools.
    #[arg(long, value_name = "NAME")]
    pub qube: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    pub volume: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Read the sparsebak 0.2 archive in <meta-dir>/default even when an
    /// archive of our own is configured.
    #[arg(long)]
    pub legacy: bool,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Volumes or qubes (by name); none: every enabled volume and qube.
    pub volumes: Vec<String>,
    /// Store each new session on the destination as one tar file instead
    /// of one file per chunk (for file systems where many small files are
    /// slow; docs/FORMAT.md §13).
    #[arg(long)]
    pub tarfile: bool,
    /// Store chunks already in the archive (any volume or session) as hard links.
    #[arg(long, conflicts_with = "tarfile")]
    pub dedup: bool,
    /// Do not resume an interrupted send: send its data again, and let the
    /// destination drop what it received of it.
    #[arg(long)]
    pub no_resume: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub volume: String,
    /// Flag differing chunks so the next send carries them.
    #[arg(long)]
    pub remap: bool,
    /// Refused with an explanation: diff compares with the latest session.
    #[arg(long, hide = true)]
    pub session: Option<String>,
}

#[derive(Args, Debug)]
pub struct ReceiveArgs {
    pub volume: String,
    /// The file or block device to write the volume to.
    #[arg(long)]
    pub save_to: Option<PathBuf>,
    /// Session date-time YYYYMMDD-HHMMSS (UTC), as shown by `list`.
    #[arg(long)]
    pub session: Option<String>,
    /// Go on when the destination does not hold what dom0's metadata says
    /// (a session lost or replaced): warn, and read what is still there.
    #[arg(long)]
    pub allow_inconsistent: bool,
    /// Read the sparsebak 0.2 archive in <meta-dir>/default even when an
    /// archive of our own is configured.
    #[arg(long)]
    pub legacy: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub volume: String,
    /// Session date-time YYYYMMDD-HHMMSS (UTC), as shown by `list`.
    #[arg(long)]
    pub session: Option<String>,
    /// Go on when the destination does not hold what dom0's metadata says
    /// (a session lost or replaced): warn, and read what is still there.
    #[arg(long)]
    pub allow_inconsistent: bool,
    /// Read the sparsebak 0.2 archive in <meta-dir>/default even when an
    /// archive of our own is configured.
    #[arg(long)]
    pub legacy: bool,
}

#[derive(Args, Debug)]
pub struct RestoreQubeArgs {
    /// Qubes to restore, by the name the archive recorded.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub qubes: Vec<String>,
    /// Every qube in the archive, templates and netvms first.
    #[arg(long)]
    pub all: bool,
    /// With --all: leave this qube out (repeat for more).
    #[arg(long, value_name = "QUBE", requires = "all")]
    pub exclude: Vec<String>,
    /// Restore as of this date-time YYYYMMDD-HHMMSS (UTC): each qube's newest
    /// settings record at or before it (`list QUBE` shows them).
    #[arg(long)]
    pub session: Option<String>,
    /// Restore the one qube named under this new name.
    #[arg(long = "as", value_name = "NEWNAME")]
    pub as_name: Option<String>,
    /// Create missing qubes in this Qubes storage pool (an LVM thin pool).
    #[arg(long)]
    pub pool: Option<String>,
    /// Print every step, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Shut a running qube down (qvm-shutdown --wait) instead of refusing.
    #[arg(long)]
    pub shutdown: bool,
    /// A qube that exists keeps its settings (properties, features, tags,
    /// firewall, devices): only its data is restored.
    #[arg(long)]
    pub data_only: bool,
    /// Seconds qvm-shutdown --wait may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub shutdown_timeout: u64,
    /// Restore what the destination still holds even if it lost or
    /// changed sessions since dom0 sent them (docs/FORMAT.md §17).
    #[arg(long)]
    pub allow_inconsistent: bool,
}

impl RestoreQubeArgs {
    pub fn options(&self) -> ops::restore_qube::RestoreQubeOptions {
        ops::restore_qube::RestoreQubeOptions {
            qubes: self.qubes.clone(),
            all: self.all,
            exclude: self.exclude.clone(),
            session: self.session.clone(),
            as_name: self.as_name.clone(),
            pool: self.pool.clone(),
            dry_run: self.dry_run,
            shutdown: self.shutdown,
            data_only: self.data_only,
            shutdown_timeout: std::time::Duration::from_secs(self.shutdown_timeout),
            allow_inconsistent: self.allow_inconsistent,
        }
    }
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    pub volumes: Vec<String>,
    /// Session date-time YYYYMMDD-HHMMSS (UTC), or a range DT1,DT2.
    #[arg(long)]
    pub session: Option<String>,
    /// Every session before --session=DT.
    #[arg(long)]
    pub all_before: bool,
    /// Keep the newest N sessions (and prune older ones unless --keep-days keeps them).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u64>,
    /// Keep the sessions of the last N days (and prune older ones unless --keep-last keeps them).
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u64>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read every stored chunk file once and check its hashes.
    #[arg(long)]
    pub data: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// A scheduled job (`sparsebak job`, `schedule`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobArg {
    Monitor,
    Send,
}

impl From<JobArg> for crate::jobs::Job {
    fn from(j: JobArg) -> Self {
        match j {
            JobArg::Monitor => crate::jobs::Job::Monitor,
            JobArg::Send => crate::jobs::Job::Send,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ScheduleAction {
    /// Each job's timer: enabled or not, interval, next run (the default).
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start running a job from its timer (systemctl enable --now).
    Enable { job: JobArg },
    /// Stop running a job from its timer (systemctl disable --now).
    Disable { job: JobArg },
    /// How often a job runs: monitor every Nmin or Nh (1min-24h); send
    /// hourly, daily, weekly, monthly, HH:MM or DAY HH:MM; `default` undoes it.
    #[command(name = "set-interval")]
    SetInterval { job: JobArg, interval: String },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Warn about volumes whose newest session is older than this.
    #[arg(long, value_name = "HOURS", default_value_t = 48)]
    pub max_age: u64,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new archive and its local configuration.
    #[command(name = "arch-init")]
    ArchInit(InitArgs),
    /// Rebuild lost local metadata (configuration, sessions, manifests) from an existing archive.
    #[command(name = "arch-recover")]
    ArchRecover(RecoverArgs),
    /// Change an encrypted archive's passphrase (the data is not touched).
    #[command(name = "arch-passwd")]
    ArchPasswd(super::passphrase::PassArgs),
    /// Add a volume to the archive configuration (again, after arch-recover).
    Add(AddArgs),
    /// List volumes, or the sessions of one volume.
    List(ListArgs),
    /// Back up volumes (all enabled ones if none are named).
    Send(SendArgs),
    /// Harvest LVM thin changes into the change maps and rotate snapshots (cheap; for timers).
    Monitor { volumes: Vec<String> },
    /// Compare a volume with its latest session (--remap: flag differences for the next send).
    Diff(DiffArgs),
    /// Restore a volume to --save-to, as of --session or the latest session.
    Receive(ReceiveArgs),
    /// Restore whole qubes (data and settings) into Qubes, creating missing ones.
    #[command(name = "restore-qube")]
    RestoreQube(RestoreQubeArgs),
    /// Check that a session can be restored, chunk by chunk.
    Verify(VerifyArgs),
    /// Remove a volume from the archive, the configuration and local metadata.
    Delete { volume: String },
    /// Merge old sessions into the next newer one (all enabled volumes if none are named).
    Prune(PruneArgs),
    /// Delete the whole archive, local metadata and snapshots (always asks).
    #[command(name = "arch-delete")]
    ArchDelete,
    /// Check the whole archive against the local metadata (--data: every chunk file too).
    #[command(name = "arch-check")]
    ArchCheck(CheckArgs),
    /// Replace duplicate chunk files in the archive by hard links.
    #[command(name = "arch-deduplicate")]
    ArchDeduplicate,
    /// Run a scheduled job as its timer does: logged to syslog (journalctl -t sparsebak), the user notified if it fails.
    Job { job: JobArg },
    /// Show the scheduled jobs, enable or disable them, or change how often they run.
    Schedule {
        #[command(subcommand)]
        action: Option<ScheduleAction>,
    },
    /// Each job's last and next run, each volume's newest session and its age.
    Status(StatusArgs),
    /// The dom0 end of the sparsebak.Restore qrexec service (run only through
    /// its sudoers rule; reads QREXEC_REMOTE_DOMAIN and QREXEC_SERVICE_ARGUMENT).
    #[command(name = "restore-service", hide = true)]
    RestoreService,
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions { shell: clap_complete::Shell },
}

impl LocationArgs {
    pub fn location(&self) -> Location {
        Location {
            dest: self.dest.clone(),
            subdir: self.subdir.clone(),
            source: self.source.clone(),
        }
    }
}

impl InitArgs {
    pub fn options(&self, unattended: bool) -> ops::arch_init::InitOptions {
        ops::arch_init::InitOptions {
            location: self.location.location(),
            compression: self.compression.clone(),
            chunk_factor: self.chunk_factor,
            encrypt: (self.encrypt == "on").then(|| self.pass.source(unattended)),
        }
    }
}

impl PruneArgs {
    pub fn options(&self) -> ops::prune::PruneOptions {
        ops::prune::PruneOptions {
            volumes: self.volumes.clone(),
            session: self.session.clone(),
            all_before: self.all_before,
            keep_last: self.keep_last,
            keep_days: self.keep_days,
        }
    }
}

impl ReceiveArgs {
    pub fn options(&self) -> ops::receive::ReceiveOptions {
        ops::receive::ReceiveOptions {
            volume: self.volume.clone(),
            save_to: self.save_to.clone(),
            session: self.session.clone(),
            allow_inconsistent: self.allow_inconsistent,
        }
    }
}

impl VerifyArgs {
    pub fn options(&self) -> ops::verify::VerifyOptions {
        ops::verify::VerifyOptions {
            volume: self.volume.clone(),
            session: self.session.clone(),
            allow_inconsistent: self.allow_inconsistent,
        }
    }
}

impl Command {
    /// `--legacy`, on the commands that can read a sparsebak 0.2 archive.
    pub fn legacy(&self) -> Option<bool> {
        match self {
            Command::List(a) => Some(a.legacy),
            Command::Receive(a) => Some(a.legacy),
            Command::Verify(a) => Some(a.legacy),
            _ => None,
        }
    }
}

/// For a command line that failed to parse: if an option written before the
/// command belongs to that command (as sparsebak 0.2 and 0.2-era scripts
/// wrote it, `sparsebak --session=DT receive VOL`), say where it goes now.
pub fn moved_option_hint(argv: impl IntoIterator<Item = String>) -> Option<String> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let argv: Vec<String> = argv.into_iter().collect();
    let (at, sub) = argv
        .iter()
        .enumerate()
        .find_map(|(i, a)| cli.find_subcommand(a).map(|c| (i, c)))?;
    let misplaced: Vec<&String> = argv[..at]
        .iter()
        .filter(|a| {
            let long = a
                .strip_prefix("--")
                .map(|l| l.split('=').next().unwrap_or(l));
            long.is_some_and(|l| {
                let takes = |c: &clap::Command| c.get_arguments().any(|x| x.get_long() == Some(l));
                takes(sub) && !cli.get_arguments().any(|x| x.get_long() == Some(l))
            })
        })
        .collect();
    if misplaced.is_empty() {
        return None;
    }
    Some(format!(
        "sparsebak: options follow their command since 0.3: write `sparsebak {} ... {}`",
        sub.get_name(),
        misplaced
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(args: &[&str]) -> Option<String> {
        moved_option_hint(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn an_option_before_its_command_gets_a_hint() {
        assert_eq!(
            hint(&["--session=20260101-000000", "receive", "vol", "--save-to=/x"]).as_deref(),
            Some("sparsebak: options follow their command since 0.3: write `sparsebak receive ... --session=20260101-000000`")
        );
        assert!(hint(&["-u", "--save-to", "/x", "receive", "vol"])
            .unwrap()
            .contains("`sparsebak receive ... --save-to`"));
        // Global options stay where they are; options of no such command get no hint.
        assert_eq!(hint(&["--meta-dir=/m", "send", "--save-to=/x"]), None);
        assert_eq!(hint(&["--tarfile", "receive", "vol"]), None);
        assert_eq!(hint(&["--bogus"]), None);
    }
}
