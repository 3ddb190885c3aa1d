//! What `arch-check` found: counts and problems (docs/FORMAT.md §17.2).

use super::Problem;
use serde::Serialize;

/// Most problems a report keeps (all are counted).
pub const MAX_LISTED: usize = 10_000;

#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// The archive's generation in dom0's record (FORMAT.md §17.3), after
    /// the check recorded every consistent volume.
    pub archive_generation: Option<u64>,
    pub volumes: u64,
    pub sessions: u64,
    pub manifests: u64,
    /// `--data`: chunk files read and checked, and their bytes.
    pub data: bool,
    pub chunk_files: u64,
    pub chunk_bytes: u64,
    pub problem_count: u64,
    /// The first [`MAX_LISTED`] problems.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn add(&mut self, p: Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}
