//! Test fixtures shared by the integration tests of `sparsebak` (dom0) and
//! `sparsebak-agent`. A dev-dependency only: nothing here is shipped.
//!
//! * [`tree`]: one walk of a directory tree, so a test can snapshot what is
//!   on disk and prove a command changed nothing (or only what it should).
//! * [`mounts`]: which mount point holds a path, as the agent's mount-point
//!   check sees it (`/proc/self/mountinfo`).
//! * [`sandbox`]: a temp dir with the archive's destination and a canary
//!   directory beside it that no command may touch.
//! * [`peer`]: the dom0 side of the agent protocol over any pair of byte
//!   streams (a socket to an in-process agent, or a child's stdin/stdout).
//!
//! What only one crate's tests need stays in that crate's `tests/it/`.

pub mod mounts;
pub mod peer;
pub mod sandbox;
pub mod tree;
