//! Command-line syntax. Options are global, so they are accepted before or
//! after the command, as sparsebak 0.2 accepted them.

use clap::{Parser, Subcommand};
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
    pub opts: Opts,
}

#[derive(clap::Args, Debug, Default)]
pub struct Opts {
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
    /// Session date-time YYYYMMDD-HHMMSS (UTC), as shown by `list`; prune
    /// also takes a range DT1,DT2.
    #[arg(long, global = true)]
    pub session: Option<String>,
    /// prune: every session before --session=DT.
    #[arg(long, global = true)]
    pub all_before: bool,
    /// prune: keep the newest N sessions (and prune older ones unless --keep-days keeps them).
    #[arg(long, global = true, value_name = "N")]
    pub keep_last: Option<u64>,
    /// prune: keep the sessions of the last N days (and prune older ones unless --keep-last keeps them).
    #[arg(long, global = true, value_name = "N")]
    pub keep_days: Option<u64>,
    /// receive: the file or block device to write the volume to.
    #[arg(long, global = true)]
    pub save_to: Option<PathBuf>,
    /// arch-init, arch-recover: VG/POOL for LVM thin volumes, or dir:/PATH for image files.
    #[arg(long, global = true)]
    pub source: Option<String>,
    /// arch-init, arch-recover: internal:/MNT, ssh://[user@]host[:port]/MNT, qubes://VM/MNT, qubes-ssh://VM|[user@]host/MNT.
    #[arg(long, global = true)]
    pub dest: Option<String>,
    /// arch-init, arch-recover: directory under the destination mountpoint.
    #[arg(long, global = true)]
    pub subdir: Option<String>,
    /// arch-init: zstd[:1-19] (default zstd:3) or zlib[:0-9].
    #[arg(long, global = true)]
    pub compression: Option<String>,
    /// arch-init: chunk size as a multiple of 64 KiB (1-256, default 1).
    #[arg(long, global = true)]
    pub chunk_factor: Option<u64>,
    /// add: the image file or block device holding the volume.
    #[arg(long, global = true)]
    pub path: Option<PathBuf>,
    /// diff: flag differing chunks so the next send carries them.
    #[arg(long, global = true)]
    pub remap: bool,
    /// send: store each new session on the destination as one tar file
    /// instead of one file per chunk (for file systems where many small
    /// files are slow; docs/FORMAT.md §13).
    #[arg(long, global = true)]
    pub tarfile: bool,
    /// list: machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// list, receive, verify: read the sparsebak 0.2 archive in
    /// <meta-dir>/default even when an archive of our own is configured.
    #[arg(long, global = true)]
    pub legacy: bool,
    /// send: store chunks already in the archive (any volume or session) as hard links.
    #[arg(long, global = true, conflicts_with = "tarfile")]
    pub dedup: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new archive and its local configuration.
    #[command(name = "arch-init")]
    ArchInit,
    /// Rebuild lost local metadata (configuration, sessions, manifests) from an existing archive.
    #[command(name = "arch-recover")]
    ArchRecover,
    /// Add a volume to the archive configuration (again, after arch-recover).
    Add { volume: String },
    /// List volumes, or the sessions of one volume.
    List { volume: Option<String> },
    /// Back up volumes (all enabled ones if none are named).
    Send { volumes: Vec<String> },
    /// Harvest LVM thin changes into the change maps and rotate snapshots (cheap; for timers).
    Monitor { volumes: Vec<String> },
    /// Compare a volume with its latest session (--remap: flag differences for the next send).
    Diff { volume: String },
    /// Restore a volume to --save-to, as of --session or the latest session.
    Receive { volume: String },
    /// Check that a session can be restored, chunk by chunk.
    Verify { volume: String },
    /// Remove a volume from the archive, the configuration and local metadata.
    Delete { volume: String },
    /// Merge old sessions into the next newer one (all enabled volumes if none are named).
    Prune { volumes: Vec<String> },
    /// Delete the whole archive, local metadata and snapshots (always asks).
    #[command(name = "arch-delete")]
    ArchDelete,
    /// Replace duplicate chunk files in the archive by hard links.
    #[command(name = "arch-deduplicate")]
    ArchDeduplicate,
    /// Print the version.
    Version,
}
