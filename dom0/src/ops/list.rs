//! `list`: the configured volumes, or the sessions of one volume.

use super::context::Ctx;
use super::resolve::vol_name;
use crate::local_meta::SessionInfo;
use anyhow::Result;
use sparsebak_common::names::VolName;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub volume: Option<String>,
}

pub enum Listing {
    /// One row per configured volume: `volume`, `enabled`, `sessions`,
    /// `last`, `recovered` (the rows of `list --json`).
    Volumes {
        dest: String,
        rows: Vec<serde_json::Value>,
    },
    /// The chain of one volume, oldest first.
    Sessions {
        vol: VolName,
        chain: Vec<SessionInfo>,
    },
}

pub fn list(ctx: &Ctx, o: &ListOptions) -> Result<Listing> {
    let Some(v) = &o.volume else {
        let mut rows = Vec::new();
        for (vol, e) in &ctx.config.volumes {
            let chain = ctx.meta.chain(vol)?;
            rows.push(serde_json::json!({
                "volume": vol, "enabled": e.enabled, "sessions": chain.len(),
                "last": chain.last().map(|s| s.name.timestamp().to_string()),
                "recovered": e.recovered,
            }));
        }
        return Ok(Listing::Volumes {
            dest: ctx.config.dest.describe(),
            rows,
        });
    };
    let vol = vol_name(v)?;
    ctx.config.volume(&vol)?;
    let chain = ctx.meta.chain(&vol)?;
    Ok(Listing::Sessions { vol, chain })
}
