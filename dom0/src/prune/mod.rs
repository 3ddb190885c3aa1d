//! prune on dom0's side: which sessions a rule selects ([`select`]), and
//! the plan, local journal and completion of a prune ([`journal`]). The
//! `prune` command itself is [`crate::ops::prune`].

pub mod journal;
pub mod select;
pub mod stored;

pub use journal::{
    complete, pending, plan, timestamps, Completed, Planned, JOURNAL_DIR, JOURNAL_DONE,
    JOURNAL_TMP, TEST_HOOK_CRASH_AT,
};
