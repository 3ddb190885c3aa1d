//! The agent package's integration tests, linked as one binary (`it`) instead
//! of one per file. Each former test file is a module here; run one with
//! `cargo test -p sparsebak-agent --test it prune::`.
//!
//! The modules share one process: a test must not change process-wide state
//! (environment variables, the current directory, rlimits). Test hooks reach
//! the agent as environment of its child process (`prune_support::Agent`).

// Helpers shared by several modules.
mod prune_support;
mod support;

// One module per former `tests/<name>.rs`.
mod dedup_links;
mod digests;
mod hostile;
mod hostile_requests;
mod legacy;
mod planted;
mod prune;
mod read_meta;
mod resume;
mod s3;
mod sessions;
mod stall;
mod tarsession;
