//! Fault-injection hooks for the test suites, read from the environment.
//!
//! They exist only in builds with the `test-hooks` cargo feature, which the
//! crates' own dev-dependencies turn on for `cargo test`; a release (or any
//! plain `cargo build`) binary has none of them, does not read these
//! variables and does not even contain their names (tests/suite-test-hooks.sh
//! checks that). Without the feature every function here is a no-op.
//! The dispatcher's `SPARSEBAK_AGENT_NO_FEATURES` (crate::TEST_HOOK_NO_FEATURES)
//! is gated the same way where it is read.

/// Abort (as `kill -9` would stop) the agent after this many chunk renames
/// of a prune.
#[cfg(feature = "test-hooks")]
pub const CRASH_AFTER_RENAMES: &str = "SPARSEBAK_AGENT_CRASH_AFTER_RENAMES";
/// Abort the agent at a named step of a prune: `plan` (plan committed,
/// nothing moved), `target` (all moved, target's manifest and info
/// replaced), `removed` (pruned dirs removed, plan not yet); `chunk-N`
/// (a session's Nth chunk member stored, [`crash_at_count`]); in an
/// object-store archive (crate::s3store::delete) `s3-delete-marked`,
/// `s3-delete-emptied`, `s3-arch-delete-emptied`, `s3-prune-committed`
/// (the target's new generation committed, nothing deleted),
/// `s3-prune-uncommitted` (the absorbed sessions' and old generations'
/// commits deleted, their other objects not).
#[cfg(feature = "test-hooks")]
pub const CRASH_AT: &str = "SPARSEBAK_AGENT_CRASH_AT";
/// For the recovery tests: serve `ReadMeta` pieces of at most this many
/// bytes (clamped to 1..=META_PIECE), so small manifests cross many.
#[cfg(feature = "test-hooks")]
pub const META_PIECE: &str = "SPARSEBAK_AGENT_META_PIECE";

/// Abort here if [`CRASH_AT`] names `point`.
#[cfg(feature = "test-hooks")]
pub fn crash_at(point: &str) {
    if std::env::var(CRASH_AT).is_ok_and(|v| v == point) {
        crate::say::say(format_args!("test hook {CRASH_AT}={point}: aborting"));
        std::process::abort();
    }
}
#[cfg(not(feature = "test-hooks"))]
pub fn crash_at(_point: &str) {}

/// Abort if [`CRASH_AT`] names point `prefix` followed by `n` (as
/// `chunk-40`: a session's 40th chunk member was stored). The name is only
/// built in test-hook builds.
pub fn crash_at_count(prefix: &str, n: u64) {
    #[cfg(feature = "test-hooks")]
    if std::env::var(CRASH_AT)
        .is_ok_and(|v| v.strip_prefix(prefix).is_some_and(|c| c == n.to_string()))
    {
        eprintln!("sparsebak-agent: test hook {CRASH_AT}={prefix}{n}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (prefix, n);
}

/// The rename count [`CRASH_AFTER_RENAMES`] asks to abort at.
#[cfg(feature = "test-hooks")]
pub fn crash_after_renames() -> Option<u64> {
    std::env::var(CRASH_AFTER_RENAMES)
        .ok()
        .and_then(|v| v.parse().ok())
}
#[cfg(not(feature = "test-hooks"))]
pub fn crash_after_renames() -> Option<u64> {
    None
}

/// Abort because `moved` renames were done and [`crash_after_renames`]
/// asked for that count.
pub fn crash_after(want: Option<u64>, moved: u64) {
    #[cfg(feature = "test-hooks")]
    if want == Some(moved) {
        crate::say::say(format_args!(
            "test hook {CRASH_AFTER_RENAMES}={moved}: aborting"
        ));
        std::process::abort();
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (want, moved);
}

/// For the resume tests: answer `ResumeCheck` with at most this many
/// records per piece (clamped to 1..=RESUME_PIECE), so a few chunks cross
/// several pieces.
#[cfg(feature = "test-hooks")]
pub const RESUME_PIECE: &str = "SPARSEBAK_AGENT_RESUME_PIECE";

/// The `ResumeCheck` piece size [`RESUME_PIECE`] asks for, unclamped.
#[cfg(feature = "test-hooks")]
pub fn resume_piece() -> Option<usize> {
    std::env::var(RESUME_PIECE)
        .ok()
        .and_then(|v| v.parse().ok())
}
#[cfg(not(feature = "test-hooks"))]
pub fn resume_piece() -> Option<usize> {
    None
}

/// The `ReadMeta` piece size [`META_PIECE`] asks for, unclamped.
#[cfg(feature = "test-hooks")]
pub fn meta_piece() -> Option<usize> {
    std::env::var(META_PIECE).ok().and_then(|v| v.parse().ok())
}
#[cfg(not(feature = "test-hooks"))]
pub fn meta_piece() -> Option<usize> {
    None
}

/// For the object-store suite: collect unreferenced packs younger than the
/// lease too, when at least this many seconds old (crate::s3store::delete),
/// so a test need not wait out a lease.
#[cfg(feature = "test-hooks")]
pub const GC_MIN_AGE: &str = "SPARSEBAK_AGENT_GC_MIN_AGE";

/// The pack age [`GC_MIN_AGE`] asks for.
#[cfg(feature = "test-hooks")]
pub fn gc_min_age() -> Option<u64> {
    std::env::var(GC_MIN_AGE).ok().and_then(|v| v.parse().ok())
}
#[cfg(not(feature = "test-hooks"))]
pub fn gc_min_age() -> Option<u64> {
    None
}

/// Does [`CRASH_AT`] name `point`? (The object-store backend releases its
/// lease before [`crash_at`] aborts, crate::s3store::S3Archive::crash_at.)
#[cfg(feature = "test-hooks")]
pub fn crash_wanted(point: &str) -> bool {
    std::env::var(CRASH_AT).is_ok_and(|v| v == point)
}
#[cfg(not(feature = "test-hooks"))]
pub fn crash_wanted(_point: &str) -> bool {
    false
}
