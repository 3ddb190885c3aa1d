//! One function per command: turn options into library calls and reports.

use super::args::{Cli, Command, Opts};
use super::ui::{confirm, mb_per_s, progress};
use super::Done;
use crate::archive::Ctx;
use crate::config::{Config, SourceSpec, VolumeEntry, CONFIG_VERSION};
use crate::dest::{connect, DestSpec, TransportOptions};
use crate::meta::Meta;
use crate::restore::restore;
use crate::send::send_volume_with;
use crate::source::file::FileSource;
use crate::timefmt::{iso8601, now_unix};
use anyhow::{bail, Context, Result};
use sparsebak_common::header::{ArchiveHeader, Compression};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{ErrorKind, Request};
use sparsebak_common::units::{Bytes, ChunkSize};

pub fn run(cli: Cli) -> Result<Done> {
    let o = &cli.opts;
    let meta = Meta::new(&o.meta_dir);
    if o.tarfile && !matches!(cli.command, Command::Send { .. }) {
        bail!("--tarfile is only accepted by send");
    }
    match &cli.command {
        Command::Version => {
            println!("sparsebak {}", env!("CARGO_PKG_VERSION"));
            return Ok(Done::Ok);
        }
        Command::ArchInit => return arch_init(o, &meta),
        Command::ArchRecover => return super::recover::arch_recover(o, &meta),
        _ => {}
    }
    for (set, name) in [
        (o.dest.is_some(), "--dest"),
        (o.source.is_some(), "--source"),
        (o.subdir.is_some(), "--subdir"),
        (o.compression.is_some(), "--compression"),
        (o.chunk_factor.is_some(), "--chunk-factor"),
        (
            o.dedup && !matches!(cli.command, Command::Send { .. }),
            "--dedup",
        ),
    ] {
        if set {
            if name == "--dedup" {
                bail!("--dedup is only accepted by send");
            }
            bail!("{name} is only accepted by arch-init (and --dest, --subdir, --source by arch-recover)");
        }
    }
    if super::legacy::applies(&cli)? {
        return super::legacy::run(&cli, &meta);
    }
    let _lock = meta.lock_wait(std::time::Duration::from_secs(o.wait))?;
    let ctx = Ctx {
        config: Config::load(&meta.root)?,
        meta,
        transport: TransportOptions::from_env(),
        send_format: if o.tarfile {
            sparsebak_common::SessionFormat::Tar
        } else {
            sparsebak_common::SessionFormat::Folders
        },
    };
    super::prune::before_command(&ctx, &cli)?;
    match &cli.command {
        Command::Add { volume } => add(o, ctx, volume),
        Command::List { volume } => list(o, &ctx, volume.as_deref()),
        Command::Send { volumes } => send(o, &ctx, volumes),
        Command::Monitor { volumes } => {
            super::thin::monitor(&ctx, &select_volumes(&ctx, volumes)?)?;
            Ok(Done::Ok)
        }
        Command::Diff { volume } => {
            if let Some(s) = &o.session {
                bail!("--session {s:?}: diff always compares with the latest session (restore an older one with `receive --session`)");
            }
            let vol = vol_name(volume)?;
            ctx.config.volume(&vol)?;
            let n = super::thin::diff(&ctx, &vol, o.remap, progress(o.unattended).as_ref())?;
            Ok(if n > 0 && !o.remap {
                Done::Differs
            } else {
                Done::Ok
            })
        }
        Command::Receive { volume } => receive(o, &ctx, volume),
        Command::Verify { volume } => verify(o, &ctx, volume),
        Command::Delete { volume } => delete(o, ctx, volume),
        Command::Prune { volumes } => super::prune::prune(o, &ctx, &select_volumes(&ctx, volumes)?),
        Command::ArchDelete => super::remove::arch_delete(o, ctx),
        Command::ArchDeduplicate => super::dedup::arch_deduplicate(o, &ctx),
        Command::Version | Command::ArchInit | Command::ArchRecover => {
            unreachable!("handled above")
        }
    }
}

fn vol_name(s: &str) -> Result<VolName> {
    Ok(VolName::new(s)?)
}

/// `--session` for commands that restore one session (receive, verify): a
/// single date-time as `list` shows it (an `S_` prefix is accepted too).
pub(super) fn session_arg(o: &Opts, cmd: &str) -> Result<Option<SessionName>> {
    let Some(s) = o.session.as_deref() else {
        return Ok(None);
    };
    if s.contains(',') {
        bail!(
            "--session {s:?}: {cmd} takes one session, not a range (ranges are for prune; \
             `sparsebak list VOL` shows the sessions)"
        );
    }
    let ts = s.strip_prefix("S_").unwrap_or(s);
    SessionName::from_timestamp(ts)
        .map(Some)
        .with_context(|| format!("--session {s:?}: expected YYYYMMDD-HHMMSS"))
}

fn arch_init(o: &Opts, meta: &Meta) -> Result<Done> {
    let _lock = meta.lock()?;
    if Config::exists(&meta.root) {
        bail!(
            "an archive is already configured in {} (see `sparsebak list`); refusing to replace it",
            meta.root.display()
        );
    }
    let (dest, source) = dest_and_source(
        o,
        "arch-init needs --dest (for example --dest=internal:/mnt/backup)",
    )?;
    let compression: Compression = o
        .compression
        .as_deref()
        .unwrap_or("zstd:3")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let chunk_size =
        ChunkSize::from_factor(o.chunk_factor.unwrap_or(1)).map_err(anyhow::Error::msg)?;
    if chunk_size.bytes() > 256 * 1024 {
        log::warn!(
            "large chunk size {}: incremental sends will carry more unchanged data",
            Bytes(chunk_size.bytes())
        );
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let header = ArchiveHeader::new(uuid.clone(), chunk_size, compression, iso8601(now_unix()));
    let mut conn = connect(&dest, &TransportOptions::from_env())?;
    let opened = conn.open(&dest.dest_path(), &dest.mountpoint, true)?;
    if opened.header.is_some() {
        bail!(
            "an archive already exists at {}; refusing to overwrite it",
            dest.describe()
        );
    }
    conn.ok(&Request::InitArchive {
        header: serde_json::to_string(&header)?,
    })?;
    conn.close()?;
    let config = Config {
        config_version: CONFIG_VERSION,
        uuid,
        source,
        dest,
        chunk_size,
        compression,
        volumes: Default::default(),
    };
    config.save(&meta.root)?;
    println!(
        "Initialised archive {} at {} (chunk size {}, {}; {} free).",
        config.uuid,
        config.dest.describe(),
        Bytes(chunk_size.bytes()),
        compression,
        Bytes(opened.free_bytes)
    );
    Ok(Done::Ok)
}

/// `--dest` with `--subdir`, and `--source` if given (arch-init, arch-recover).
pub(super) fn dest_and_source(o: &Opts, missing: &str) -> Result<(DestSpec, Option<SourceSpec>)> {
    let dest = o.dest.as_deref().with_context(|| missing.to_string())?;
    let dest = DestSpec::parse(dest, o.subdir.as_deref().unwrap_or(""))?;
    let source = o
        .source
        .as_deref()
        .map(str::parse::<SourceSpec>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok((dest, source))
}

fn add(o: &Opts, mut ctx: Ctx, volume: &str) -> Result<Done> {
    let vol = vol_name(volume)?;
    // A volume rebuilt by arch-recover is added again to confirm its source.
    let recovered = ctx.config.volumes.get(&vol).is_some_and(|e| e.recovered);
    if ctx.config.volumes.contains_key(&vol) && !recovered {
        bail!("volume {vol} is already in the configuration");
    }
    if let Some(p) = &o.path {
        if !p.is_absolute() {
            bail!("--path {} must be absolute", p.display());
        }
    }
    ctx.config.volumes.insert(
        vol.clone(),
        VolumeEntry {
            enabled: true,
            path: o.path.clone(),
            recovered: false,
        },
    );
    let path = ctx.config.volume_path(&vol);
    if recovered {
        // Not confirmed until its source is known.
        path.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    }
    ctx.config.save(&ctx.meta.root)?;
    let path = path?;
    if recovered {
        let n = ctx.meta.chain(&vol)?.len();
        println!(
            "Volume {vol} (recovered, {n} sessions) will be read from {}; the next send continues its chain.",
            path.display()
        );
        if super::thin::thin_of(&ctx, &vol)?.is_some() {
            println!(
                "Its change map was lost with the metadata: run `sparsebak diff {vol} --remap` \
                 once, or the next send re-reads and stores every chunk."
            );
        }
    } else {
        println!("Volume {vol} added (source {}).", path.display());
    }
    Ok(Done::Ok)
}

fn list(o: &Opts, ctx: &Ctx, volume: Option<&str>) -> Result<Done> {
    let Some(v) = volume else {
        let mut rows = Vec::new();
        for (vol, e) in &ctx.config.volumes {
            let chain = ctx.meta.chain(vol)?;
            rows.push(serde_json::json!({
                "volume": vol, "enabled": e.enabled, "sessions": chain.len(),
                "last": chain.last().map(|s| s.name.timestamp().to_string()),
                "recovered": e.recovered,
            }));
        }
        if o.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            println!("Configured volumes ({}):", ctx.config.dest.describe());
            super::received::print_volume_rows(rows);
        }
        return Ok(Done::Ok);
    };
    let vol = vol_name(v)?;
    ctx.config.volume(&vol)?;
    let chain = ctx.meta.chain(&vol)?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&chain)?);
        return Ok(Done::Ok);
    }
    println!("Sessions of volume {vol} (oldest first, UTC):");
    for s in &chain {
        println!(
            "  {}  size {:>10}  {:>8} chunks recorded, {:>10} stored{}",
            s.name.timestamp(),
            Bytes(s.volsize.0).to_string(),
            s.chunks,
            Bytes(s.stored_bytes).to_string(),
            if s.format == sparsebak_common::FORMAT_TAR {
                " (tar)"
            } else {
                ""
            }
        );
    }
    if chain.is_empty() {
        println!("  (none yet)");
    }
    Ok(Done::Ok)
}

/// The named volumes (each must be configured and enabled), or every enabled one.
fn select_volumes(ctx: &Ctx, names: &[String]) -> Result<Vec<VolName>> {
    let vols: Vec<VolName> = if names.is_empty() {
        let enabled = ctx.config.volumes.iter().filter(|(_, e)| e.enabled);
        enabled.map(|(v, _)| v.clone()).collect()
    } else {
        let vols = names
            .iter()
            .map(|n| vol_name(n))
            .collect::<Result<Vec<_>>>()?;
        for v in &vols {
            ctx.config.volume(v)?;
        }
        vols
    };
    if vols.is_empty() {
        bail!("no volumes configured: add one with `sparsebak add VOLUME`");
    }
    Ok(vols)
}

fn send(o: &Opts, ctx: &Ctx, names: &[String]) -> Result<Done> {
    let vols = select_volumes(ctx, names)?;
    let mut open = Some(ctx.open(true)?);
    if let Some(op) = &open {
        println!(
            "Sending to {} ({} free)",
            ctx.config.dest.describe(),
            Bytes(op.free_bytes)
        );
    }
    let mut dedup = match (o.dedup, open.as_mut()) {
        (true, Some(op)) => Some(super::dedup::prepare_send(ctx, &mut op.conn)?),
        _ => None,
    };
    let pb = progress(o.unattended);
    let mut failed: Vec<(VolName, anyhow::Error)> = Vec::new();
    let mut i = 0;
    while let Some(vol) = vols.get(i) {
        i += 1;
        // A failed send may leave the connection unusable: reconnect, so one
        // bad volume does not keep the others from being backed up.
        let op = match open.take() {
            Some(op) => op,
            None => match ctx.open(true) {
                Ok(op) => op,
                Err(e) => {
                    failed.push((vol.clone(), e));
                    continue;
                }
            },
        };
        let mut op = op;
        let res = send_one(ctx, &mut op.conn, vol, pb.as_ref(), dedup.as_mut());
        if let Some(d) = dedup.as_mut() {
            d.end_session(matches!(&res, Ok(Some(r)) if r.session.is_some()));
        }
        match res {
            Ok(Some(r)) => {
                print_send_report(vol, &r);
                if dedup.is_some() {
                    super::dedup::print_send_line(&r);
                }
            }
            Ok(None) => {}
            Err(e) => {
                if dedup
                    .as_mut()
                    .is_some_and(|d| super::dedup::avoid_damaged(d, vol, &e))
                {
                    i -= 1; // the same volume again
                    continue;
                }
                if vols.len() > 1 {
                    log::error!("{e:#}");
                }
                failed.push((vol.clone(), e));
                continue;
            }
        }
        open = Some(op);
    }
    if let Some(op) = open {
        op.conn.close()?;
    }
    match failed.len() {
        0 => Ok(Done::Ok),
        1 if vols.len() == 1 => Err(failed.pop().expect("one failure").1),
        n => {
            let names: Vec<String> = failed.iter().map(|(v, _)| v.to_string()).collect();
            bail!(
                "{n} of {} volumes failed to send: {}",
                vols.len(),
                names.join(", ")
            )
        }
    }
}

/// Send one volume from its source; `None` if it does not exist yet.
fn send_one(
    ctx: &Ctx,
    conn: &mut crate::dest::AgentConn,
    vol: &VolName,
    pb: &dyn crate::progress::Progress,
    dedup: Option<&mut crate::dedup::run::RunDedup>,
) -> Result<Option<crate::send::SendReport>> {
    let dedup = dedup.map(|d| d as &mut dyn crate::dedup::run::LinkSource);
    if let Some(thin) = super::thin::thin_of(ctx, vol)? {
        let r = super::thin::send_thin(ctx, conn, vol, thin, pb, dedup)?;
        if r.is_none() {
            log::warn!("volume {vol} does not exist yet in {}; skipped", thin.0);
        }
        return Ok(r);
    }
    let path = ctx.config.volume_path(vol)?;
    if !path.exists() {
        log::warn!(
            "volume {vol} does not exist yet at {}; skipped",
            path.display()
        );
        return Ok(None);
    }
    let src = FileSource::open(&path).with_context(|| format!("volume {vol}"))?;
    send_volume_with(ctx, conn, vol, &src, pb, dedup).map(Some)
}

fn print_send_report(vol: &VolName, r: &crate::send::SendReport) {
    let secs = r.elapsed.as_secs_f64();
    match &r.session {
        None => println!("Volume {vol}: no changes ({} read at {}).", Bytes(r.read_bytes), mb_per_s(r.read_bytes, secs)),
        Some(s) => println!(
            "Volume {vol}: {} session {} — {} chunks changed ({} zero), {} stored; {} read in {:.1}s ({}).",
            if r.full { "full" } else { "incremental" },
            s.timestamp(),
            r.changed_chunks,
            r.zero_chunks,
            Bytes(r.stored_bytes),
            Bytes(r.read_bytes),
            secs,
            mb_per_s(r.read_bytes, secs)
        ),
    }
    if let Some(p) = r.previous_size.filter(|p| *p != r.volsize) {
        println!(
            "  volume size changed from {} to {} bytes",
            p.0, r.volsize.0
        );
    }
}

fn receive(o: &Opts, ctx: &Ctx, volume: &str) -> Result<Done> {
    let vol = vol_name(volume)?;
    ctx.config.volume(&vol)?;
    let target = o
        .save_to
        .as_deref()
        .context("receive needs --save-to=PATH (a file or block device)")?;
    let want = session_arg(o, "receive")?;
    let chain = ctx.meta.chain(&vol)?;
    let sel = crate::restore::select(&chain, &vol, want.as_ref())?;
    let info = &chain[sel];
    super::received::receive(
        o,
        ctx,
        &vol,
        &info.name,
        info.volsize,
        target,
        "",
        || Ok(ctx.open(false)?.conn),
        |conn, out, pb| restore(ctx, conn, &vol, Some(&info.name), Some(out), pb),
    )?;
    if sel + 1 != chain.len() {
        log::info!("note: this is not the latest session of {vol}");
    }
    Ok(Done::Ok)
}

fn verify(o: &Opts, ctx: &Ctx, volume: &str) -> Result<Done> {
    let vol = vol_name(volume)?;
    ctx.config.volume(&vol)?;
    let want = session_arg(o, "verify")?;
    super::received::verify(
        o,
        &vol,
        "",
        || Ok(ctx.open(false)?.conn),
        |conn, pb| restore(ctx, conn, &vol, want.as_ref(), None, pb),
    )
}

fn delete(o: &Opts, mut ctx: Ctx, volume: &str) -> Result<Done> {
    let vol = vol_name(volume)?;
    if !ctx.config.volumes.contains_key(&vol) {
        bail!("volume {vol} is not configured");
    }
    if !confirm(
        &format!("Delete volume {vol} and all its sessions from the archive?"),
        o.unattended,
    )? {
        bail!("delete cancelled");
    }
    let mut open = ctx.open(true)?;
    match open.conn.delete_volume(&vol)? {
        Ok(()) => {}
        Err(refused) if refused.kind == ErrorKind::NotFound => {}
        Err(refused) => return Err(refused.into()),
    }
    open.conn.close()?;
    super::remove::drop_snapshots(&ctx.config, &vol, &ctx.config.volumes[&vol]);
    let d = ctx.meta.vol_dir(&vol);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))?;
    }
    ctx.config.volumes.remove(&vol);
    ctx.config.save(&ctx.meta.root)?;
    println!("Volume {vol} deleted from the archive and the configuration.");
    Ok(Done::Ok)
}
