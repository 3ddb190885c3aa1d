//! `diff`: compare a volume with the archive's latest session, chunk by
//! chunk. With `remap`, differing chunks are flagged in the change map so
//! the next send carries them.

use super::context::Ctx;
use super::{resolve::vol_name, thin, Ui};
use crate::lvm::deltamap::DeltaMap;
use crate::lvm::snapshots::ThinVolume;
use crate::reflink::volume::ReflinkVolume;
use crate::restore::{restore, Sink};
use crate::source::file::FileSource;
use crate::source::VolumeSource;
use anyhow::{bail, Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::units::{ByteOffset, Bytes};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    pub volume: String,
    /// Flag differing chunks for the next send (thin volumes and reflink
    /// sources only).
    pub remap: bool,
    /// Refused: diff always compares with the latest session.
    pub session: Option<String>,
}

#[derive(Clone, Debug)]
pub struct DiffReport {
    pub vol: VolName,
    /// What was compared: the image file, the thin LV's device, or a
    /// reflink source's `.tick` copy.
    pub path: PathBuf,
    pub session: SessionName,
    /// Addresses of the differing chunks, in order.
    pub differ: Vec<ByteOffset>,
    pub chunks: u64,
    pub volsize: Bytes,
    pub elapsed: Duration,
    /// The differing chunks were flagged in the change map (`remap`).
    pub flagged: bool,
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

/// The same for a reflink source: its `.tick` copy (or the image when there
/// is none); with `remap`, a map based on that tick or a fresh baseline.
fn reflink_baseline(rv: &ReflinkVolume<'_>, remap: bool) -> Result<(PathBuf, Option<DeltaMap>)> {
    let (tick, map) = rv.current()?;
    if !remap {
        return Ok((tick.unwrap_or_else(|| rv.image.clone()), None));
    }
    // `current` keeps a tick only when the map names it.
    if let (Some(t), Some(m)) = (tick, map) {
        return Ok((t, Some(m)));
    }
    let (t, m) = rv.fresh_baseline()?.with_context(|| {
        format!(
            "volume {}: image {} does not exist",
            rv.vol,
            rv.image.display()
        )
    })?;
    Ok((t, Some(m)))
}

/// The path to compare and, with `remap`, the change map to flag and where
/// it is saved.
fn diff_target(
    ctx: &Ctx,
    vol: &VolName,
    remap: bool,
) -> Result<(PathBuf, Option<(DeltaMap, PathBuf)>)> {
    if let Some(pool) = super::reflink::reflink_of(ctx, vol)? {
        let rv = super::reflink::reflink_volume(ctx, pool, vol)?;
        let (path, map) = reflink_baseline(&rv, remap)?;
        return Ok((path, map.map(|m| (m, rv.map_path.clone()))));
    }
    Ok(match thin::thin_of(ctx, vol)? {
        None if remap => {
            bail!("--remap works on LVM thin volumes and reflink sources; {vol} is an image file")
        }
        None => (ctx.config.volume_path(vol)?, None),
        Some((vg, pool)) => {
            let tv = thin::thin_volume(ctx, vg, pool, vol)?;
            let (lv, map) = diff_baseline(&tv, remap)?;
            (
                ctx.lvm.device_path(vg, &lv),
                map.map(|m| (m, tv.map_path.clone())),
            )
        }
    })
}

/// diff: compare the volume with the archive's latest session. With `remap`,
/// flag differing chunks so the next send carries them.
pub fn diff(ctx: &Ctx, ui: &dyn Ui, o: &DiffOptions) -> Result<DiffReport> {
    if let Some(s) = &o.session {
        bail!("--session {s:?}: diff always compares with the latest session (restore an older one with `receive --session`)");
    }
    super::prune::complete_interrupted(ctx, std::slice::from_ref(&o.volume))?;
    let vol = vol_name(&o.volume)?;
    ctx.config.volume(&vol)?;
    let chain = ctx.meta.chain(&vol)?;
    let Some(last) = chain.last() else {
        bail!("volume {vol} has no sessions to compare with")
    };
    let (path, mut remap_to) = diff_target(ctx, &vol, o.remap)?;
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
    let cs = ctx.config.chunk_size.bytes();
    let cmp = Compare {
        dev,
        cs,
        differ: Mutex::new(Vec::new()),
    };
    // It compares with what the destination holds: that must be dom0's.
    let mut conn = super::consistent(ctx, false, &vol, false)?;
    let pb = ui.progress();
    let r = restore(ctx, &mut conn, &vol, None, Some(&cmp), pb.as_ref())?;
    conn.close()?;
    let mut differ = cmp.differ.into_inner().unwrap();
    differ.sort_unstable();
    if let Some((m, p)) = remap_to.as_mut() {
        differ.iter().for_each(|&i| m.set(i));
        m.save(p)?;
    }
    Ok(DiffReport {
        path,
        session: last.name.clone(),
        differ: differ.iter().map(|i| ByteOffset(i * cs)).collect(),
        chunks: r.chunks,
        volsize: r.volsize,
        elapsed: r.elapsed,
        flagged: remap_to.is_some(),
        vol,
    })
}
