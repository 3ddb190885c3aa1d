//! Commands and steps specific to LVM thin sources: send from snapshots,
//! monitor, diff, and receiving into a thin LV.

use super::ui::mb_per_s;
use crate::archive::Ctx;
use crate::config::SourceSpec;
use crate::dest::AgentConn;
use crate::lvm::cli::LvmCli;
use crate::lvm::deltamap::DeltaMap;
use crate::lvm::dm::lv_path;
use crate::lvm::snapshots::{Prepared, ThinVolume};
use crate::lvm::Lvm;
use crate::progress::Progress;
use crate::restore::{restore, Sink};
use crate::send::{send_volume_with, SendReport};
use crate::source::file::FileSource;
use crate::source::lvm::LvmSource;
use crate::source::VolumeSource;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// In the metadata directory: a metadata snapshot this archive reserved
/// (see [`crate::lvm::metasnap`]).
pub const METASNAP_MARKER: &str = "metadata-snap-reserved";

/// The VG and pool of a volume read from LVM, or `None` for a file volume.
pub fn thin_of<'c>(ctx: &'c Ctx, vol: &VolName) -> Result<Option<(&'c str, &'c str)>> {
    let e = ctx.config.source_known(vol)?;
    match (&e.path, &ctx.config.source) {
        (None, Some(SourceSpec::Lvm { vg, pool })) => Ok(Some((vg.as_str(), pool.as_str()))),
        _ => Ok(None),
    }
}

pub fn thin_volume<'a>(
    ctx: &'a Ctx,
    lvm: &'a dyn Lvm,
    vg: &'a str,
    pool: &'a str,
    vol: &'a VolName,
) -> Result<ThinVolume<'a>> {
    let d = ctx.meta.vol_dir(vol);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(ThinVolume {
        lvm,
        vg,
        pool,
        vol,
        map_path: d.join("deltamap"),
        metasnap_marker: ctx.meta.root.join(METASNAP_MARKER),
        cs: ctx.config.chunk_size,
    })
}

/// Send one thin volume; `None` if it does not exist yet.
pub fn send_thin(
    ctx: &Ctx,
    conn: &mut AgentConn,
    vol: &VolName,
    (vg, pool): (&str, &str),
    pb: &dyn Progress,
    dedup: Option<&mut dyn crate::dedup::run::LinkSource>,
) -> Result<Option<SendReport>> {
    let lvm = LvmCli;
    lvm.check_thin_delta()
        .with_context(|| format!("volume {vol}"))?;
    let tv = thin_volume(ctx, &lvm, vg, pool, vol)?;
    let has_sessions = !ctx.meta.chain(vol)?.is_empty();
    let (tick, map, full) = match tv
        .harvest(has_sessions, true)
        .with_context(|| format!("volume {vol}"))?
    {
        Prepared::Missing => return Ok(None),
        Prepared::NotStarted => unreachable!("harvest for send"),
        Prepared::Full { tick, map } => (tick, map, true),
        Prepared::Incremental {
            tick, map, resync, ..
        } => {
            if resync {
                log::warn!("{vol}: re-reading the whole volume to resynchronise");
            }
            (tick, map, false)
        }
    };
    let src = LvmSource::open(vg, &tick.name, (!full).then(|| map.clone()))?;
    let report = send_volume_with(ctx, conn, vol, &src, pb, dedup)?;
    tv.sent(map)?;
    Ok(Some(report))
}

pub fn monitor(ctx: &Ctx, vols: &[VolName]) -> Result<()> {
    let lvm = LvmCli;
    let mut any = false;
    for vol in vols {
        if ctx.config.volumes.get(vol).is_some_and(|e| e.recovered) {
            log::warn!("volume {vol} was recovered by arch-recover: skipped until `sparsebak add {vol}` confirms its source");
            continue;
        }
        let Some((vg, pool)) = thin_of(ctx, vol)? else {
            continue;
        };
        if !any {
            lvm.check_thin_delta()
                .with_context(|| format!("monitor of volume {vol}"))?;
            any = true;
        }
        let tv = thin_volume(ctx, &lvm, vg, pool, vol)?;
        let has_sessions = !ctx.meta.chain(vol)?.is_empty();
        match tv.harvest(has_sessions, false).with_context(|| format!("monitor of volume {vol}"))? {
            Prepared::Missing => log::warn!("volume {vol} does not exist in {vg}; skipped"),
            Prepared::NotStarted => println!("{vol}: not sent yet; nothing to track"),
            Prepared::Incremental { map, harvested, resync, .. } => println!(
                "{vol}: {harvested} chunks changed since the last harvest; {} pending for the next send{}",
                map.count(),
                if resync { " (resynchronising)" } else { "" }
            ),
            Prepared::Full { .. } => unreachable!("monitor never starts a full session"),
        }
    }
    if !any {
        bail!("monitor works on LVM thin volumes, and none is configured (arch-init --source=VG/POOL)");
    }
    Ok(())
}

/// Compares restored chunks with a local device.
struct Compare {
    dev: File,
    cs: u64,
    differ: Mutex<Vec<u64>>,
}

impl Compare {
    fn check(&self, addr: ByteOffset, want: &[u8]) -> Result<()> {
        let mut have = vec![0u8; want.len()];
        self.dev
            .read_exact_at(&mut have, addr.0)
            .with_context(|| format!("cannot read the volume at {addr}"))?;
        if have != want {
            self.differ.lock().unwrap().push(addr.0 / self.cs);
        }
        Ok(())
    }
}

impl Sink for Compare {
    fn data(&self, addr: ByteOffset, bytes: &[u8]) -> Result<()> {
        self.check(addr, bytes)
    }
    fn zero(&self, addr: ByteOffset, len: u64) -> Result<()> {
        self.check(addr, &vec![0u8; len as usize])
    }
}

/// What diff compares with: the `.tick` snapshot (or the volume itself when
/// there is none), and with `remap` the change map to flag, whose base must be
/// that tick — otherwise a fresh tick and an empty map become the baseline.
fn diff_baseline(tv: &ThinVolume<'_>, remap: bool) -> Result<(String, Option<DeltaMap>)> {
    let s = tv.lvm.survey(tv.vg)?;
    tv.origin(&s)?
        .with_context(|| format!("volume {} does not exist in {}", tv.vol, tv.vg))?;
    let tick = s.get(&tv.tick());
    if !remap {
        return Ok((
            tick.map(|t| t.name.clone())
                .unwrap_or_else(|| tv.vol.to_string()),
            None,
        ));
    }
    let map = DeltaMap::load(&tv.map_path)?;
    if let (Some(t), Some(m)) = (tick, &map) {
        if t.thin_id == Some(m.base_thin_id) {
            return Ok((t.name.clone(), map));
        }
    }
    let (t, m) = tv.fresh_baseline()?;
    Ok((t.name, Some(m)))
}

/// diff: compare the volume with the archive's latest session. With `remap`,
/// flag differing chunks so the next send carries them.
pub fn diff(ctx: &Ctx, vol: &VolName, remap: bool, pb: &dyn Progress) -> Result<u64> {
    let chain = ctx.meta.chain(vol)?;
    let Some(last) = chain.last() else {
        bail!("volume {vol} has no sessions to compare with")
    };
    let lvm = LvmCli;
    let (path, mut remap_to) = match thin_of(ctx, vol)? {
        None if remap => bail!("--remap works on LVM thin volumes; {vol} is an image file"),
        None => (ctx.config.volume_path(vol)?, None),
        Some((vg, pool)) => {
            let tv = thin_volume(ctx, &lvm, vg, pool, vol)?;
            let (lv, map) = diff_baseline(&tv, remap)?;
            (
                PathBuf::from(lv_path(vg, &lv)),
                map.map(|m| (m, tv.map_path.clone())),
            )
        }
    };
    let size = FileSource::open(&path)?.size();
    if size != last.volsize {
        bail!(
            "volume sizes differ: archive {} bytes, local {} bytes ({})",
            last.volsize.0,
            size.0,
            path.display()
        );
    }
    let dev = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let cmp = Compare {
        dev,
        cs: ctx.config.chunk_size.bytes(),
        differ: Mutex::new(Vec::new()),
    };
    let mut open = ctx.open(false)?;
    let r = restore(ctx, &mut open.conn, vol, None, Some(&cmp), pb)?;
    open.conn.close()?;
    let mut differ = cmp.differ.into_inner().unwrap();
    differ.sort_unstable();
    for i in &differ {
        println!(
            "  differs: chunk {}",
            ByteOffset(i * ctx.config.chunk_size.bytes())
        );
    }
    println!(
        "Compared {vol} ({}) with session {}: {} of {} chunks differ ({}).",
        path.display(),
        last.name.timestamp(),
        differ.len(),
        r.chunks,
        mb_per_s(r.volsize.0, r.elapsed.as_secs_f64())
    );
    if let Some((m, p)) = remap_to.as_mut() {
        differ.iter().for_each(|&i| m.set(i));
        m.save(p)?;
        println!(
            "{} chunks flagged; the next send brings the archive in sync.",
            differ.len()
        );
    }
    Ok(differ.len() as u64)
}

/// For receive into `/dev/VG/LV`: create the thin LV in the configured pool
/// if missing, resize it if needed. Returns the device to write.
pub fn prepare_lv_target(ctx: &Ctx, target: &Path, size: Bytes) -> Result<Option<PathBuf>> {
    let Some(SourceSpec::Lvm { vg, pool }) = &ctx.config.source else {
        return Ok(None);
    };
    let Ok(rest) = target.strip_prefix(Path::new("/dev").join(vg)) else {
        return Ok(None);
    };
    let lv = rest.to_string_lossy().into_owned();
    if lv.is_empty() || lv.contains('/') || lv.ends_with(".tick") || lv.ends_with(".tock") {
        bail!(
            "--save-to {}: not a volume sparsebak may write",
            target.display()
        );
    }
    let lvm = LvmCli;
    let s = lvm.survey(vg)?;
    match s.get(&lv) {
        None => {
            lvm.create_thin(vg, pool, &lv, size)?;
            log::info!(
                "created thin volume {vg}/{lv} of {} bytes in pool {pool}",
                size.0
            );
        }
        Some(info) if !info.is_thin_volume() => bail!("{vg}/{lv} is not a thin volume"),
        Some(info) if info.size != size => {
            lvm.resize(vg, &lv, size)?;
            log::info!("resized {vg}/{lv} from {} to {} bytes", info.size.0, size.0);
        }
        Some(_) => {}
    }
    Ok(Some(PathBuf::from(lv_path(vg, &lv))))
}
