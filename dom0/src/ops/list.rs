//! `list`: the configured volumes (and the qubes they belong to), or the
//! sessions of one volume or qube.

use super::context::Ctx;
use super::resolve::vol_name;
use crate::local_meta::SessionInfo;
use crate::qubes::{archive_volume, split_archive_volume};
use anyhow::Result;
use sparsebak_common::names::VolName;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub volume: Option<String>,
}

pub enum Listing {
    /// One row per configured volume: `volume`, `enabled`, `sessions`,
    /// `last`, `recovered`, and for a qube's volume `qube` (its name, null
    /// when only arch-recover knows it) and `qube_volume` (`private`,
    /// `root`, `settings`): the rows of `list --json`.
    Volumes {
        dest: String,
        rows: Vec<serde_json::Value>,
    },
    /// The sessions of a qube's settings record (`list QUBE`): each is a
    /// point `restore-qube --session` can go back to.
    Qube {
        name: String,
        id: String,
        chain: Vec<SessionInfo>,
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
            let mut row = serde_json::json!({
                "volume": vol, "enabled": e.enabled, "sessions": chain.len(),
                "last": chain.last().map(|s| s.name.timestamp().to_string()),
                "recovered": e.recovered,
            });
            if let Some((id, part)) = split_archive_volume(vol.as_str()) {
                row["qube"] = ctx.config.qubes.get(id).map(|q| q.name.clone()).into();
                row["qube_volume"] = part.into();
            }
            rows.push(row);
        }
        return Ok(Listing::Volumes {
            dest: ctx.config.dest.describe(),
            rows,
        });
    };
    if let Some((id, q)) = ctx.config.qubes.iter().find(|(_, q)| &q.name == v) {
        let vol = vol_name(&archive_volume(id, "settings"))?;
        return Ok(Listing::Qube {
            name: q.name.clone(),
            id: id.clone(),
            chain: ctx.meta.chain(&vol)?,
        });
    }
    let vol = vol_name(v)?;
    ctx.config.volume(&vol)?;
    let chain = ctx.meta.chain(&vol)?;
    Ok(Listing::Sessions { vol, chain })
}
