//! `arch-recover`: rebuild the local metadata from an existing archive
//! (the library's [`crate::recover`]) and report per volume.

use super::args::Opts;
use super::Done;
use crate::dest::TransportOptions;
use crate::meta::{Meta, SessionInfo};
use crate::recover::{recover, Options, Report};
use anyhow::{bail, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::Bytes;

/// Prints what is fetched, volume by volume.
struct Printer;

impl Report for Printer {
    fn volume_started(&self, vol: &VolName, sessions: usize) {
        println!("Volume {vol}: fetching {sessions} session(s)");
    }
    fn session_fetched(&self, _vol: &VolName, info: &SessionInfo, manifest_bytes: u64) {
        println!(
            "  {}  size {:>10}  {:>8} chunks, manifest {} checked",
            info.name.timestamp(),
            Bytes(info.volsize.0).to_string(),
            info.chunks,
            Bytes(manifest_bytes)
        );
    }
    fn volume_failed(&self, vol: &str, e: &anyhow::Error) {
        log::error!("volume {vol:?} not recovered: {e:#}");
    }
}

pub fn arch_recover(o: &Opts, meta: &Meta) -> Result<Done> {
    let _lock = meta.lock()?;
    let (dest, source) = super::commands::dest_and_source(
        o,
        "arch-recover needs --dest (the same --dest and --subdir as arch-init was given)",
    )?;
    for (set, name) in [
        (o.compression.is_some(), "--compression"),
        (o.chunk_factor.is_some(), "--chunk-factor"),
    ] {
        if set {
            bail!("{name} is not accepted by arch-recover: the archive header fixes it");
        }
    }
    let opts = Options {
        dest,
        source,
        transport: TransportOptions::from_env(),
    };
    let out = recover(meta, &opts, &Printer)?;
    let sessions: usize = out.recovered.iter().map(|r| r.sessions).sum();
    let bytes: u64 = out.recovered.iter().map(|r| r.manifest_bytes).sum();
    if out.committed {
        println!(
        "Recovered archive {} at {}: {} volume(s), {sessions} session(s), {} of manifests, into {}.",
        out.uuid,
        opts.dest.describe(),
        out.recovered.len(),
        Bytes(bytes),
        meta.root.display()
    );
    }
    for v in &out.empty {
        println!("Volume {v}: no committed session on the destination; not added.");
    }
    if !out.recovered.is_empty() {
        println!(
            "Before sending, confirm each volume's source with `sparsebak add VOLUME [--path=...]`."
        );
    }
    if !out.committed {
        println!(
            "Nothing was recovered: {} is left without an archive configuration.",
            meta.root.display()
        );
    }
    if !out.failed.is_empty() {
        let names: Vec<String> = out.failed.iter().map(|(v, _)| format!("{v:?}")).collect();
        bail!(
            "{} volume(s) could not be recovered: {}",
            out.failed.len(),
            names.join(", ")
        );
    }
    Ok(Done::Ok)
}
