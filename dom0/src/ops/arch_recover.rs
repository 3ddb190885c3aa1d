//! `arch-recover`: rebuild lost local metadata from an existing archive
//! (the library's [`crate::recover`]).

use super::resolve::Location;
use crate::dest::{DestSpec, TransportOptions};
use crate::local_meta::Meta;
use crate::recover::{recover, Options, Outcome, Report};
use anyhow::Result;

/// The archive's location, as given to arch-init.
#[derive(Clone, Debug, Default)]
pub struct RecoverOptions {
    pub location: Location,
    /// Asked only if the archive is encrypted.
    pub passphrase: Option<crate::passphrase::Passphrase>,
}

/// What was recovered, and from where.
pub struct Recovered {
    pub dest: DestSpec,
    pub outcome: Outcome,
}

pub fn arch_recover(
    meta: &Meta,
    transport: TransportOptions,
    o: &RecoverOptions,
    report: &dyn Report,
) -> Result<Recovered> {
    let _lock = meta.lock()?;
    let (dest, source) = o.location.resolve(
        "arch-recover needs --dest (the same --dest and --subdir as arch-init was given)",
    )?;
    let opts = Options {
        dest,
        source,
        transport,
        passphrase: o.passphrase.clone(),
    };
    let outcome = recover(meta, &opts, report)?;
    Ok(Recovered {
        dest: opts.dest,
        outcome,
    })
}
