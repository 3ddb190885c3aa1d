//! How reports and events look on the terminal: every line the command
//! prints on stdout, and the prompts it asks on stderr.

use super::ui::{confirm, confirm_typed, mb_per_s, progress};
use super::Done;
use crate::consistency::report::CheckReport;
use crate::local_meta::{Meta, SessionInfo};
use crate::ops::add::Added;
use crate::ops::arch_delete::Deleted;
use crate::ops::arch_init::Initialised;
use crate::ops::arch_recover::Recovered;
use crate::ops::dedup::DeduplicateReport;
use crate::ops::diff::DiffReport;
use crate::ops::legacy::{LegacyListing, LABEL};
use crate::ops::list::Listing;
use crate::ops::monitor::Tracked;
use crate::ops::prune::VolumeOutcome;
use crate::ops::receive::Received;
use crate::ops::verify::Verified;
use crate::ops::{Event, Ui};
use crate::progress::Progress;
use crate::prune::timestamps;
use crate::send::SendReport;
use anyhow::{bail, Result};
use sparsebak_common::names::VolName;
use sparsebak_common::units::Bytes;

/// The terminal as the [`Ui`] of an operation.
pub struct Terminal {
    unattended: bool,
}

impl Terminal {
    pub fn unattended(&self) -> bool {
        self.unattended
    }

    pub fn new(unattended: bool) -> Self {
        Terminal { unattended }
    }
}

impl Ui for Terminal {
    fn confirm(&self, question: &str) -> Result<bool> {
        confirm(question, self.unattended)
    }
    fn confirm_typed(&self, warning: &str, question: &str, accepted: &[&str]) -> Result<bool> {
        eprintln!("{warning}");
        confirm_typed(question, accepted)
    }
    fn progress(&self) -> Box<dyn Progress> {
        progress(self.unattended)
    }
    fn event(&self, e: Event<'_>) {
        match e {
            Event::Sending { dest, free } => println!("Sending to {dest} ({free} free)"),
            Event::Sent { vol, report, dedup } => sent(vol, report, dedup),
            Event::Monitored { vol, state } => match state {
                Tracked::NotStarted => println!("{vol}: not sent yet; nothing to track"),
                Tracked::Harvested {
                    harvested,
                    pending,
                    resync,
                } => println!(
                    "{vol}: {harvested} chunks changed since the last harvest; {pending} pending for the next send{}",
                    if resync { " (resynchronising)" } else { "" }
                ),
            },
            Event::SnapshotRemoved(n) => println!("Removed snapshot {n}."),
            Event::ArchiveDeleted { dest } => println!("Deleted the archive at {dest}."),
            Event::Deduplicating { dest, volumes } => {
                println!("Deduplicating the archive at {dest} ({volumes} volumes)…")
            }
            Event::Pruned(p) => pruned(p),
        }
    }
}

fn sent(vol: &VolName, r: &SendReport, dedup: bool) {
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
    if let (Some(from), Some(_)) = (&r.resumed_from, &r.session) {
        println!(
            "  resumed {}: {} chunks ({}) were already on the destination and kept; {} bytes sent",
            from.timestamp(),
            r.resumed_chunks,
            Bytes(r.resumed_bytes),
            r.sent_bytes
        );
    }
    if dedup && r.session.is_some() {
        println!(
            "  deduplicated: {} chunks linked to files already in the archive, {} not sent",
            r.linked_chunks,
            Bytes(r.linked_bytes)
        );
    }
}

fn pruned(p: VolumeOutcome<'_>) {
    match p {
        VolumeOutcome::TooFew(vol) => println!("Volume {vol}: no extra sessions to prune."),
        VolumeOutcome::Empty(vol) => {
            println!("Volume {vol}: no sessions to prune in this selection.")
        }
        VolumeOutcome::Cancelled(vol) => println!("Volume {vol}: prune cancelled."),
        VolumeOutcome::Pruned {
            vol,
            pruned,
            target,
            moves,
            chunks,
        } => println!(
            "Volume {vol}: pruned {} session(s) ({}) into {}: {moves} chunk files moved, {chunks} chunks recorded.",
            pruned.len(),
            timestamps(pruned),
            target.timestamp(),
        ),
    }
}

pub fn initialised(r: &Initialised) {
    let c = &r.config;
    println!(
        "Initialised archive {} at {} (chunk size {}, {}, {}; {} free).",
        c.uuid,
        c.dest.describe(),
        Bytes(c.chunk_size.bytes()),
        c.compression,
        if r.encrypted {
            "encrypted"
        } else {
            "not encrypted"
        },
        Bytes(r.free_bytes)
    );
}

/// Prints what arch-recover fetches, volume by volume.
pub struct RecoverPrinter;

impl crate::recover::Report for RecoverPrinter {
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

pub fn recovered(meta: &Meta, r: &Recovered) -> Result<Done> {
    let out = &r.outcome;
    let sessions: usize = out.recovered.iter().map(|r| r.sessions).sum();
    let bytes: u64 = out.recovered.iter().map(|r| r.manifest_bytes).sum();
    if out.committed {
        println!(
            "Recovered archive {} at {}: {} volume(s), {sessions} session(s), {} of manifests, into {}.",
            out.uuid,
            r.dest.describe(),
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

pub fn added(a: &Added) {
    let vol = &a.vol;
    let Some(rec) = &a.recovered else {
        println!("Volume {vol} added (source {}).", a.path.display());
        return;
    };
    println!(
        "Volume {vol} (recovered, {} sessions) will be read from {}; the next send continues its chain.",
        rec.sessions,
        a.path.display()
    );
    if rec.thin {
        println!(
            "Its change map was lost with the metadata: run `sparsebak diff {vol} --remap` \
             once, or the next send re-reads and stores every chunk."
        );
    }
}

pub fn listing(l: &Listing, json: bool) -> Result<Done> {
    match l {
        Listing::Volumes { dest, rows } => {
            if json {
                println!("{}", serde_json::to_string_pretty(rows)?);
            } else {
                super::print_qubes::qubes_of(rows);
                println!("Configured volumes ({dest}):");
                volume_rows(rows);
            }
        }
        Listing::Qube { name, id, chain } => {
            super::print_qubes::qube_sessions(name, id, chain, json)?
        }
        Listing::Sessions { vol, chain } => {
            if json {
                println!("{}", serde_json::to_string_pretty(chain)?);
                return Ok(Done::Ok);
            }
            println!("Sessions of volume {vol} (oldest first, UTC):");
            for s in chain {
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
        }
    }
    Ok(Done::Ok)
}

pub fn legacy_listing(l: &LegacyListing, json: bool) -> Result<Done> {
    match l {
        LegacyListing::Volumes {
            dest,
            chunk_size,
            rows,
            broken,
        } => {
            if json {
                println!("{}", serde_json::to_string_pretty(rows)?);
            } else {
                println!(
                    "Archive: {LABEL} at {dest}, chunk size {}",
                    Bytes(chunk_size.bytes())
                );
                println!("Configured volumes:");
                volume_rows(rows);
            }
            match broken.len() {
                0 => Ok(Done::Ok),
                n => bail!("{}; metadata of {n} volume(s) is broken", broken.join("; ")),
            }
        }
        LegacyListing::Sessions { vol, chain } => {
            if json {
                println!("{}", serde_json::to_string_pretty(chain)?);
                return Ok(Done::Ok);
            }
            println!("Sessions of volume {vol} in the {LABEL} archive (oldest first, local time as 0.2 named them):");
            for s in chain {
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
    }
}

/// The rows of `list` without a volume: name, session count, last session,
/// whether disabled, or recovered and not yet added again (arch-recover).
fn volume_rows(rows: &[serde_json::Value]) {
    for r in rows {
        let n = r["sessions"].as_u64().unwrap_or(0);
        println!(
            "  {:<40} {:>4} {}{}{}",
            r["volume"].as_str().unwrap_or(""),
            n,
            if n == 1 { "session" } else { "sessions" },
            r["last"]
                .as_str()
                .map(|l| format!(", last {l}"))
                .unwrap_or_default(),
            match (r["enabled"] == false, r["recovered"] == true) {
                (true, _) => " (disabled)",
                (false, true) => " (recovered: `add` it to send)",
                _ => "",
            }
        );
        if let Some(part) = r["qube_volume"].as_str() {
            println!(
                "      {part} of qube {}",
                r["qube"]
                    .as_str()
                    .unwrap_or("(not added since arch-recover)")
            );
        }
    }
}

pub fn diff(r: &DiffReport) -> Done {
    for a in &r.differ {
        println!("  differs: chunk {a}");
    }
    println!(
        "Compared {} ({}) with session {}: {} of {} chunks differ ({}).",
        r.vol,
        r.path.display(),
        r.session.timestamp(),
        r.differ.len(),
        r.chunks,
        mb_per_s(r.volsize.0, r.elapsed.as_secs_f64())
    );
    if r.flagged {
        println!(
            "{} chunks flagged; the next send brings the archive in sync.",
            r.differ.len()
        );
        return Done::Ok;
    }
    if r.differ.is_empty() {
        Done::Ok
    } else {
        Done::Differs
    }
}

/// `archive` follows the session name (empty for our own archives).
pub fn received(r: &Received, archive: &str) {
    let secs = r.report.elapsed.as_secs_f64();
    println!(
        "Received {} session {}{archive} into {}: {} ({} chunks, {} zero) in {:.1}s ({}).",
        r.vol,
        r.session.timestamp(),
        r.target.display(),
        Bytes(r.report.volsize.0),
        r.report.chunks,
        r.report.zero_chunks,
        secs,
        mb_per_s(r.report.volsize.0, secs)
    );
    if r.not_latest {
        log::info!("note: this is not the latest session of {}", r.vol);
    }
}

/// `Done::Damaged` with every bad chunk on stderr if any failed.
pub fn verified(v: &Verified, archive: &str) -> Done {
    let r = &v.report;
    let vol = &v.vol;
    let s = r.session.as_ref().map(|s| s.timestamp()).unwrap_or("-");
    if r.bad.is_empty() {
        println!(
            "Verified {vol} session {s}{archive}: {} chunks ({} stored, {} zero) restore {} correctly in {:.1}s.",
            r.chunks,
            r.data_chunks,
            r.zero_chunks,
            Bytes(r.volsize.0),
            r.elapsed.as_secs_f64()
        );
        return Done::Ok;
    }
    for b in &r.bad {
        eprintln!("sparsebak: damaged: {b}");
    }
    eprintln!(
        "sparsebak: verify of {vol} session {s} FAILED: {} bad chunk(s)",
        r.bad.len()
    );
    Done::Damaged
}

/// arch-deduplicate's summary line. In an object store a duplicate is not
/// a hard link but an index entry pointing at the kept copy, and its bytes
/// are freed only with the pack that holds them (docs/FORMAT.md §21.5).
fn dedup_summary(d: &DeduplicateReport) -> String {
    let r = &d.report;
    let head = format!(
        "Examined {} chunk files ({} distinct) in {:.1}s: {} duplicates",
        r.chunks,
        r.distinct,
        d.elapsed.as_secs_f64(),
        r.ops
    );
    if d.object_store {
        format!(
            "{head}, {} replaced by references to the kept copy, {} already references; \
             {} no longer referenced (a pack is deleted once no session refers to any of it \
             and it is older than the store's lease).",
            r.linked,
            r.already,
            Bytes(r.bytes_saved)
        )
    } else {
        format!(
            "{head}, {} replaced by hard links, {} already linked; {} saved.",
            r.linked,
            r.already,
            Bytes(r.bytes_saved)
        )
    }
}

pub fn arch_deleted(d: &Deleted) {
    println!(
        "Archive {} deleted. Its configuration is kept as {} for reference; \
         `sparsebak arch-init` can create a new archive.",
        d.uuid,
        d.kept_config.display()
    );
}

pub fn deduplicated(d: &DeduplicateReport) -> Done {
    println!("{}", dedup_summary(d));
    let r = &d.report;
    if r.problem_count == 0 {
        return Done::Ok;
    }
    for p in &r.problems {
        eprintln!("sparsebak: damaged: {p}");
    }
    if r.problem_count > r.problems.len() as u64 {
        eprintln!(
            "sparsebak: … and {} more",
            r.problem_count - r.problems.len() as u64
        );
    }
    eprintln!(
        "sparsebak: {} duplicate(s) were left alone because a file is damaged or missing; run `sparsebak verify` on the volumes named",
        r.problem_count
    );
    Done::Damaged
}

/// arch-check: one line per problem on stderr (as verify's damaged
/// chunks), and what was checked; or everything as JSON on stdout.
pub fn checked(r: &CheckReport, json: bool) -> Result<Done> {
    let done = match r.problem_count {
        0 => Done::Ok,
        _ => Done::Damaged,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(done);
    }
    for p in &r.problems {
        eprintln!("sparsebak: problem: {p}");
    }
    let unlisted = r.problem_count - r.problems.len() as u64;
    if unlisted > 0 {
        eprintln!("sparsebak: … and {unlisted} more problems (not listed)");
    }
    let data = match r.data {
        true => format!(", {} chunk files ({})", r.chunk_files, Bytes(r.chunk_bytes)),
        false => " (chunk files not read; --data reads them)".into(),
    };
    let what = format!(
        "{} volumes, {} sessions, {} manifests{data}",
        r.volumes, r.sessions, r.manifests
    );
    if let Some(g) = r.archive_generation {
        println!("The archive's newest state dom0 wrote: generation {g}.");
    }
    match r.problem_count {
        0 => println!("Checked {what}: no problems."),
        1 => eprintln!("sparsebak: arch-check of {what}: 1 problem"),
        n => eprintln!("sparsebak: arch-check of {what}: {n} problems"),
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::archive::DedupReport;

    /// arch-deduplicate says what it did where the archive lives: hard
    /// links on a file system; on an object store, index entries pointing
    /// at the kept copy, whose freed bytes go with their pack (regression:
    /// it said "hard links" on S3).
    #[test]
    fn dedup_summary_says_what_was_done_where() {
        let report = DedupReport {
            chunks: 40,
            distinct: 27,
            ops: 13,
            linked: 11,
            already: 2,
            bytes_saved: 11 << 20,
            ..Default::default()
        };
        let mut d = DeduplicateReport {
            report,
            elapsed: std::time::Duration::from_millis(1500),
            object_store: false,
        };
        let fs = dedup_summary(&d);
        assert_eq!(
            fs,
            "Examined 40 chunk files (27 distinct) in 1.5s: 13 duplicates, 11 replaced by hard \
             links, 2 already linked; 11.0 MiB saved."
        );
        d.object_store = true;
        let s3 = dedup_summary(&d);
        assert!(!s3.contains("hard link"), "{s3}");
        assert!(
            s3.contains(
                "13 duplicates, 11 replaced by references to the kept copy, 2 already references; \
                 11.0 MiB no longer referenced (a pack is deleted once"
            ),
            "{s3}"
        );
    }
}
