//! `arch-passwd`: change an encrypted archive's passphrase. The master key
//! is wrapped again with the new passphrase (fresh salt and nonce) and the
//! header replaced on the destination; no chunk or metadata file is read or
//! rewritten, and dom0's key file does not change. dom0 holds the master
//! key already, so the old passphrase is not asked (root on dom0 can read
//! the key file anyway; docs/FORMAT.md §18.3).

use super::context::Ctx;
use crate::crypto::wrap::{wrap, Cost};
use crate::keyring;
use crate::passphrase::Passphrase;
use anyhow::{bail, Result};
use sparsebak_common::proto::{Request, FEATURE_REWRAP_KEY};

#[derive(Clone, Debug)]
pub struct PasswdOptions {
    /// The new passphrase.
    pub passphrase: Passphrase,
}

pub fn arch_passwd(ctx: &Ctx, o: &PasswdOptions) -> Result<()> {
    let mut open = ctx.open(true)?;
    let d = ctx.config.dest.describe();
    if !open.header.encrypted() {
        bail!("the archive at {d} is not encrypted (format 1): it has no passphrase to change");
    }
    if !open.conn.has_feature(FEATURE_REWRAP_KEY) {
        bail!(
            "the agent at {d} is too old to replace the archive header; install the matching \
             sparsebak-agent there"
        );
    }
    let master = keyring::load_key(&ctx.meta.root, &ctx.config.uuid)?;
    let keys = ctx
        .keys()?
        .expect("an encrypted archive was opened with its keys");
    let pass = o.passphrase.get("new passphrase", true)?;
    let mut h = open.header.clone();
    h.key = Some(wrap(&master, &pass, &h.uuid, Cost::for_new_wraps()));
    keyring::set_mac(&mut h, &keys)?;
    open.conn.ok(&Request::RewrapKey {
        header: serde_json::to_string(&h)?,
    })?;
    open.conn.close()
}
