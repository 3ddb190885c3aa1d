//! Names in requests, parsed into the layout's types once, with the error
//! kind dom0 sees for a name the layout could not have produced (Invalid).

use crate::error::{AgentError, Result};
use sparsebak_common::names::{SessionName, VolName};

pub fn parse_vol(v: &str) -> Result<VolName> {
    VolName::new(v).map_err(|e| AgentError::invalid(e.to_string()))
}

pub fn parse_session(s: &str) -> Result<SessionName> {
    SessionName::new(s).map_err(|e| AgentError::invalid(e.to_string()))
}
