//! The dom0 package's end-to-end tests, linked as one binary (`it`) instead of
//! one per file: on a 2-core machine linking ~15 test binaries against the
//! whole dependency tree cost more than running them. Each former test file is
//! a module here; run one with `cargo test -p sparsebak --test it prune::`.
//!
//! The modules share one process, so a test must not change process-wide state
//! (environment variables, the current directory, rlimits): pass environment
//! to the child processes with `Command::env`, as `common::run_sparsebak` does.
//! Loop devices and mounts are per-test paths; `common::Loop` serialises
//! `losetup` so parallel tests do not race for the same free device.

// Helpers shared by several modules.
mod common;
mod legacy_support;
mod prune_support;
mod recover_support;
mod tarfile_support;

// One module per former `tests/<name>.rs`.
mod bad_input;
mod cli_commands;
mod consistency;
mod damaged_chunks;
mod dedup;
mod delete;
mod dest_transports;
mod encrypted;
mod full_disk;
mod legacy;
mod legacy_hostile;
mod prune;
mod prune_crash;
mod qubes_cli;
mod recover;
mod recover_hostile;
mod reflink;
mod restore_sessions;
mod resume;
mod sparse_images;
mod tarfile;
mod tarfile_prune;
