//! `list`, `receive` and `verify` on a sparsebak 0.2 archive
//! (`<meta-dir>/default/archive.ini`; docs/FORMAT.md §14). Used when no
//! archive of our own is configured there, or with `--legacy`. Every other
//! command is refused on such a meta dir: 0.2 archives are read-only.

use super::args::{Cli, Command, Opts};
use super::Done;
use crate::archive::Ctx;
use crate::config::Config;
use crate::dest::{connect, AgentConn, TransportOptions};
use crate::legacy::restore::{restore, select};
use crate::legacy::{self, LegacyArchive};
use crate::meta::Meta;
use anyhow::{bail, Result};
use sparsebak_common::names::SessionName;
use sparsebak_common::proto::{Request, Response};
use sparsebak_common::units::Bytes;

const LABEL: &str = "sparsebak 0.2 (read-only)";

/// Does this command read the meta dir's sparsebak 0.2 archive? Errors for
/// commands that cannot run on it.
pub fn applies(cli: &Cli) -> Result<bool> {
    let meta = &cli.opts.meta_dir;
    let reads = matches!(
        cli.command,
        Command::List { .. } | Command::Receive { .. } | Command::Verify { .. }
    );
    if cli.opts.legacy {
        if !reads {
            bail!("--legacy works only with list, receive and verify");
        }
        if !legacy::exists(meta) {
            bail!(
                "--legacy: no sparsebak 0.2 archive in {} ({} does not exist)",
                meta.display(),
                legacy::ini_path(meta).display()
            );
        }
        return Ok(true);
    }
    if Config::exists(meta) || !legacy::exists(meta) {
        return Ok(false);
    }
    if !reads {
        bail!(
            "{} holds a sparsebak 0.2 archive ({}); only list, receive and verify can read it; run arch-init to start a new archive",
            meta.display(),
            legacy::ini_path(meta).display()
        );
    }
    Ok(true)
}

pub fn run(cli: &Cli, meta: &Meta) -> Result<Done> {
    let _lock = meta.lock_wait(std::time::Duration::from_secs(cli.opts.wait))?;
    let arch = LegacyArchive::load(&meta.root)?;
    let o = &cli.opts;
    match &cli.command {
        Command::List { volume } => list(o, &arch, volume.as_deref()),
        Command::Receive { volume } => receive(o, meta, &arch, volume),
        Command::Verify { volume } => verify(o, &arch, volume),
        _ => unreachable!("applies() admits only list, receive and verify"),
    }
}

fn one_session(o: &Opts, cmd: &str) -> Result<Option<SessionName>> {
    super::commands::session_arg(o, cmd)
}

/// Connect to the agent at 0.2's destination and open its archive read-only.
fn open(arch: &LegacyArchive) -> Result<AgentConn> {
    let d = &arch.config.dest;
    let mut conn = connect(d, &TransportOptions::from_env())?;
    match conn.request(&Request::OpenLegacy {
        dest_path: d.dest_path(),
        mountpoint: d.mountpoint.clone(),
    })? {
        Response::Opened { .. } => Ok(conn),
        r => bail!("unexpected answer to OpenLegacy: {r:?}"),
    }
}

fn list(o: &Opts, arch: &LegacyArchive, volume: Option<&str>) -> Result<Done> {
    let Some(v) = volume else {
        let mut rows = Vec::new();
        let mut broken = Vec::new();
        for (vol, enabled) in &arch.config.volumes {
            // One volume's broken metadata must not hide the others.
            let chain = arch.chain(vol).unwrap_or_else(|e| {
                broken.push(format!("{e:#}"));
                Vec::new()
            });
            rows.push(serde_json::json!({
                "volume": vol.as_str(), "enabled": enabled, "sessions": chain.len(),
                "last": chain.last().map(|s| s.name.timestamp().to_string()),
            }));
        }
        let done = || match broken.len() {
            0 => Ok(Done::Ok),
            n => bail!("{}; metadata of {n} volume(s) is broken", broken.join("; ")),
        };
        if o.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return done();
        }
        println!(
            "Archive: {LABEL} at {}, chunk size {}",
            arch.config.dest.describe(),
            Bytes(arch.config.chunk_size.bytes())
        );
        println!("Configured volumes:");
        super::received::print_volume_rows(rows);
        return done();
    };
    let vol = arch.volume(v)?;
    let chain = arch.chain(&vol)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&chain)?);
        return Ok(Done::Ok);
    }
    println!("Sessions of volume {vol} in the {LABEL} archive (oldest first, local time as 0.2 named them):");
    for s in &chain {
        println!(
            "  {}  seq {:>5}  size {:>10}{}",
            s.name.timestamp(),
            s.sequence
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            Bytes(s.volsize.0).to_string(),
            if s.format == "tar" {
                "  (tar, cannot be restored)"
            } else {
                ""
            }
        );
    }
    if chain.is_empty() {
        println!("  (none)");
    }
    Ok(Done::Ok)
}

fn receive(o: &Opts, meta: &Meta, arch: &LegacyArchive, volume: &str) -> Result<Done> {
    let vol = arch.volume(volume)?;
    let Some(target) = o.save_to.as_deref() else {
        bail!("receive needs --save-to=PATH (a file or block device)");
    };
    let want = one_session(o, "receive")?;
    let chain = arch.chain(&vol)?;
    let sel = select(&chain, &vol, want.as_ref())?;
    let info = &chain[sel];
    let ctx = Ctx {
        meta: meta.clone(),
        config: arch.as_config(),
        transport: TransportOptions::from_env(),
        send_format: sparsebak_common::SessionFormat::Folders,
    };
    super::received::receive(
        o,
        &ctx,
        &vol,
        &info.name,
        info.volsize,
        target,
        &format!(" ({LABEL} archive)"),
        || open(arch),
        |conn, out, pb| restore(arch, conn, &vol, &chain, sel, Some(out), pb),
    )?;
    Ok(Done::Ok)
}

fn verify(o: &Opts, arch: &LegacyArchive, volume: &str) -> Result<Done> {
    let vol = arch.volume(volume)?;
    let want = one_session(o, "verify")?;
    let chain = arch.chain(&vol)?;
    let sel = select(&chain, &vol, want.as_ref())?;
    super::received::verify(
        o,
        &vol,
        &format!(" ({LABEL} archive)"),
        || open(arch),
        |conn, pb| restore(arch, conn, &vol, &chain, sel, None, pb),
    )
}
