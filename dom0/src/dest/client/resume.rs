//! `ResumeCheck` on dom0's side (docs/FORMAT.md §19): what an unfinished
//! session on the destination holds, one bounded piece at a time. The
//! records are checked for shape here (length, count); what they say is
//! judged by the caller, and no record is ever trusted for data: a chunk
//! is only kept after the agent hashes it again against dom0's own hash.

use super::{AgentConn, Answer};
use anyhow::{bail, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{Request, Response, FEATURE_RESUME, RESUME_PIECE, RESUME_RECORD};

/// One `ResumeHeld` answer: records of [`RESUME_RECORD`] bytes, and
/// whether more follow.
#[derive(Debug)]
pub struct HeldPiece {
    pub records: Vec<u8>,
    pub more: bool,
}

impl AgentConn {
    /// Does the agent resume interrupted sends?
    pub fn can_resume(&self) -> bool {
        self.features.iter().any(|f| f == FEATURE_RESUME)
    }

    /// The agent's version as it announced it, for messages.
    pub fn agent_version(&self) -> &str {
        if self.agent_version.is_empty() {
            "of unknown version"
        } else {
            &self.agent_version
        }
    }

    /// The chunk files unfinished session `session` of `vol` holds after
    /// address `after`. A refusal (`NotFound`: nothing of it is left) is
    /// the caller's to judge.
    pub fn resume_check(
        &mut self,
        vol: &VolName,
        session: &SessionName,
        after: Option<u64>,
    ) -> Result<Answer<HeldPiece>> {
        let req = Request::ResumeCheck {
            vol: vol.clone(),
            session: session.clone(),
            after,
        };
        let (count, more) = match self.call(&req)? {
            Ok(Response::ResumeHeld { count, more }) => (count, more),
            Ok(r) => bail!("unexpected answer to ResumeCheck: {r:?}"),
            Err(refused) => return Ok(Err(refused)),
        };
        let max = RESUME_PIECE * RESUME_RECORD;
        if count > RESUME_PIECE as u64 {
            // The frame that follows cannot be trusted to be skipped.
            self.kill();
            bail!(
                "the agent at {} announced {count} records of unfinished session {session} of volume {vol} \
                 (at most {RESUME_PIECE} per piece)",
                self.what
            );
        }
        let frame = self.piece_frame(max, || {
            format!("what unfinished session {session} of volume {vol} holds")
        })?;
        if frame.len() as u64 != count * RESUME_RECORD as u64 {
            self.kill();
            bail!(
                "the agent at {} announced {count} records of unfinished session {session} of volume {vol} but sent {} bytes",
                self.what,
                frame.len()
            );
        }
        Ok(Ok(HeldPiece {
            records: frame,
            more,
        }))
    }
}
