//! TEST HOOK, for the crash-recovery tests only: abort sparsebak (as
//! `kill -9` would stop it) at a named step, given in the environment
//! variable [`TEST_HOOK_CRASH_AT`]. Only builds with the `test-hooks`
//! feature (the test suites') read it; release binaries do not contain it
//! (tests/suite-test-hooks.sh checks).
//!
//! Points: a prune's `journal`, `agent-done`, `local-target`
//! (prune/journal.rs); a reflink source's `reflink-tock`, `reflink-map`,
//! `reflink-promoted`, `reflink-sent` (reflink/volume.rs, ops/send.rs);
//! `send-chunk-N`, a send before its Nth chunk member (send.rs).

pub const TEST_HOOK_CRASH_AT: &str = "SPARSEBAK_TEST_CRASH_AT";

/// Abort here if the test asked for point `prefix` followed by `n` (as
/// `send-chunk-40`: a send, before its 40th chunk member goes out). The
/// name is only built in test-hook builds.
pub fn crash_at_count(prefix: &str, n: u64) {
    #[cfg(feature = "test-hooks")]
    if std::env::var(TEST_HOOK_CRASH_AT)
        .is_ok_and(|v| v.strip_prefix(prefix).is_some_and(|c| c == n.to_string()))
    {
        eprintln!("sparsebak: test hook {TEST_HOOK_CRASH_AT}={prefix}{n}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = (prefix, n);
}

/// Abort here if the test asked for `point`.
pub fn crash_at(point: &str) {
    #[cfg(feature = "test-hooks")]
    if std::env::var(TEST_HOOK_CRASH_AT).is_ok_and(|v| v == point) {
        eprintln!("sparsebak: test hook {TEST_HOOK_CRASH_AT}={point}: aborting");
        std::process::abort();
    }
    #[cfg(not(feature = "test-hooks"))]
    let _ = point;
}
