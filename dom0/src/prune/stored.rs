//! Format 2: the prune plan as the destination gets it. The journal keeps
//! dom0's plain plan, manifest and info.json (applied locally), and beside
//! them in `dest/` the forms uploaded: the plan naming the volume by its
//! hidden name, the manifest and info.json sealed to the target session.
//! They are made once, when the journal is written, so a replay uploads
//! the very same bytes and the agent can tell a finished prune by
//! comparing the target's manifest with them (docs/FORMAT.md §10.4, §18.6).

use crate::fsutil::write_atomic;
use crate::metaseal::MetaSeal;
use anyhow::{Context, Result};
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::plan::PLAN_FILE;
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The journal's subdirectory holding the uploaded forms.
pub const STORED_DIR: &str = "dest";

/// Where the upload of `journal` comes from.
pub fn upload_dir(journal: &Path) -> PathBuf {
    let d = journal.join(STORED_DIR);
    if d.is_dir() {
        d
    } else {
        journal.to_path_buf()
    }
}

/// Write `dir/dest/` from the plain plan files in `dir` (format 2 only).
pub fn write_stored(
    dir: &Path,
    vol: &VolName,
    target: &SessionName,
    seal: &MetaSeal,
) -> Result<()> {
    if !seal.sealed() {
        return Ok(());
    }
    let out = dir.join(STORED_DIR);
    fs::create_dir(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let plan = dir.join(PLAN_FILE);
    let r = BufReader::new(
        File::open(&plan).with_context(|| format!("cannot open {}", plan.display()))?,
    );
    let dst = out.join(PLAN_FILE);
    let mut w = BufWriter::new(
        File::create(&dst).with_context(|| format!("cannot create {}", dst.display()))?,
    );
    let vol_line = format!("vol {vol}");
    for (i, line) in r.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", plan.display()))?;
        let line = if i == 1 && line == vol_line {
            format!("vol {}", seal.dir())
        } else {
            line
        };
        writeln!(w, "{line}").with_context(|| format!("cannot write {}", dst.display()))?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", dst.display()))?;
    seal.manifest(target, &dir.join(MANIFEST_FILE), &out.join(MANIFEST_FILE))?;
    let info = crate::fsutil::read_bounded(&dir.join(SESSION_INFO_FILE), 1 << 20)?;
    write_atomic(&out.join(SESSION_INFO_FILE), &seal.info(target, &info))?;
    crate::fsutil::fsync_dir(&out)?;
    Ok(())
}
