//! Where a format 2 archive's passphrase comes from. The CLI reads it from
//! a terminal, a file descriptor or a file (never the command line or the
//! environment); library callers and tests hand it over directly.

use anyhow::Result;
use std::sync::Arc;
use zeroize::Zeroizing;

pub trait PassphraseSource: Send + Sync {
    /// The passphrase; `new` asks for a new one (twice at a terminal).
    fn passphrase(&self, prompt: &str, new: bool) -> Result<Zeroizing<Vec<u8>>>;
}

/// A passphrase source an options struct can hold.
#[derive(Clone)]
pub struct Passphrase(pub Arc<dyn PassphraseSource>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Passphrase {
    /// A fixed passphrase (library use, tests).
    pub fn given(p: &[u8]) -> Self {
        Passphrase(Arc::new(Given(Zeroizing::new(p.to_vec()))))
    }

    pub fn get(&self, prompt: &str, new: bool) -> Result<Zeroizing<Vec<u8>>> {
        let p = self.0.passphrase(prompt, new)?;
        anyhow::ensure!(!p.is_empty(), "the passphrase is empty");
        Ok(p)
    }
}

struct Given(Zeroizing<Vec<u8>>);

impl PassphraseSource for Given {
    fn passphrase(&self, _prompt: &str, _new: bool) -> Result<Zeroizing<Vec<u8>>> {
        Ok(self.0.clone())
    }
}
