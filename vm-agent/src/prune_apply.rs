//! Prune on the archive side: carry out a plan dom0 computed (see
//! `sparsebak_common::plan` and docs/FORMAT.md, "Prune").
//!
//! 1. `PrunePart` requests upload `plan`, `manifest` and `info.json` into
//!    `<vol>/.prune-plan-tmp/`.
//! 2. `Prune` checks the plan against the request and the archive, makes it
//!    durable and renames the directory to `<vol>/.prune-plan/`: from then
//!    on the prune is decided and will be completed.
//! 3. [`apply`] renames every listed chunk file into the target (a rename
//!    whose source is gone and whose destination exists was done by an
//!    earlier run), `syncfs`, replaces the target's manifest and info
//!    atomically, sets the pruned session dirs aside as `S_…-pruned` and
//!    removes them, then sets the plan aside as `.prune-plan-done` and
//!    removes it.
//!
//! Every later request on the volume calls [`settle`] first, which replays a
//! leftover plan, so an agent killed at any step leaves an archive that the
//! next run completes. Paths are never taken from the plan: each is built
//! from validated names, and chunk files are moved with `renameat` between
//! directories opened with `O_NOFOLLOW`.

use crate::dirfd::{self, open_path_file, optional, AtError};
use crate::error::{AgentError, IoContext, Result};
use crate::fsutil::{fsync_dir, syncfs};
use crate::open_archive::Archive;
use crate::tarsession::prune_parts::PruneParts;
use crate::test_hooks;
use nix::errno::Errno;
use sparsebak_common::names::{chunk_dir_name, chunk_file_name, SessionName, VolName};
use sparsebak_common::plan::{PlanHead, PlanReader, PLAN_FILE};
use sparsebak_common::proto::ErrorKind;
use sparsebak_common::{MANIFEST_FILE, SESSION_INFO_FILE};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// A committed plan: the prune is decided and is completed by [`settle`].
pub const PLAN_DIR: &str = ".prune-plan";
/// A plan being uploaded; discarded unless `Prune` commits it.
pub const PLAN_TMP: &str = ".prune-plan-tmp";
/// A finished plan being removed.
pub const PLAN_DONE: &str = ".prune-plan-done";
/// Suffix of a pruned session dir being removed.
pub const PRUNED_SUFFIX: &str = "-pruned";
/// The files of a plan directory.
pub const PLAN_FILES: [&str; 3] = [PLAN_FILE, MANIFEST_FILE, SESSION_INFO_FILE];
/// Largest `info.json` accepted in a plan.
const MAX_INFO: u64 = 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub struct Pruned {
    pub moved: u64,
    pub already_done: bool,
}

fn exists(p: &Path) -> Result<bool> {
    match fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AgentError::io(
            format_args!("cannot stat {}", p.display()),
            e,
        )),
    }
}

/// Remove a directory tree if present (a symlink in its place is unlinked,
/// never followed).
fn remove_tree(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(
            format_args!("cannot stat {}", p.display()),
            e,
        )),
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(p).ctx(format_args!("cannot remove {}", p.display()))
        }
        Ok(_) => fs::remove_file(p).ctx(format_args!("cannot remove {}", p.display())),
    }
}

/// The volume dir, which must be a real directory.
fn vol_dir(a: &Archive, vol: &VolName) -> Result<PathBuf> {
    let d = a.vol_dir(vol);
    match fs::symlink_metadata(&d) {
        Ok(m) if m.is_dir() => Ok(d),
        Ok(_) => Err(AgentError::invalid(format!(
            "{} is not a directory; refusing to prune through it",
            d.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(AgentError::new(
            ErrorKind::NotFound,
            format!("volume {vol} is not in the archive"),
        )),
        Err(e) => Err(AgentError::io(
            format_args!("cannot stat {}", d.display()),
            e,
        )),
    }
}

/// Why [`settle`] is called.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Listing: replay if we hold the lock, otherwise list as things are.
    List,
    /// Reading or writing the volume: replay, or refuse without the lock;
    /// also discard a plan upload that no `Prune` followed.
    Data,
    /// `Prune` itself: replay, keeping the upload it is about to use.
    Prune,
}

/// Replay a leftover plan of `vol`, if any, and tidy what an interrupted
/// prune may leave. Without the archive lock nothing can be replayed.
pub fn settle(a: &Archive, vol: &VolName, why: Use) -> Result<()> {
    a.header()?;
    let vdir = a.vol_dir(vol);
    if !fs::symlink_metadata(&vdir).is_ok_and(|m| m.is_dir()) {
        // No volume yet, or not a real directory: nothing to replay, and
        // nothing is ever removed through a symlink. The request itself
        // reports what is wrong.
        return Ok(());
    }
    let writable = a.require_write().is_ok();
    if writable && why == Use::Data {
        remove_tree(&vdir.join(PLAN_TMP))?;
    }
    if !exists(&vdir.join(PLAN_DIR))? {
        if writable {
            // A finished plan whose removal was interrupted.
            remove_tree(&vdir.join(PLAN_DONE))?;
        }
        return Ok(());
    }
    if !writable {
        if why == Use::List {
            return Ok(());
        }
        return Err(AgentError::invalid(format!(
            "volume {vol} has an unfinished prune; any sparsebak command that writes to the archive \
             (prune, send) completes it"
        )));
    }
    crate::say::say(format_args!(
        "completing an interrupted prune of volume {vol}"
    ));
    apply(&vol_dir(a, vol)?, a.header()?.chunk_size.max_stored()).map(|_| ())
}

/// `PrunePart`: append `data` to one file of the plan upload.
pub fn put_part(a: &Archive, vol: &VolName, file: &str, offset: u64, data: &str) -> Result<()> {
    a.require_write()?;
    if !PLAN_FILES.contains(&file) {
        return Err(AgentError::invalid(format!(
            "{file:?} is not a prune plan file (plan, manifest, info.json)"
        )));
    }
    let vdir = vol_dir(a, vol)?;
    let tmp = vdir.join(PLAN_TMP);
    if file == PLAN_FILE && offset == 0 {
        remove_tree(&tmp)?;
        fs::create_dir(&tmp).ctx(format_args!("cannot create {}", tmp.display()))?;
    } else if !fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_dir()) {
        return Err(AgentError::invalid(format!(
            "no prune plan upload of {vol} is in progress (it starts with {PLAN_FILE} at offset 0)"
        )));
    }
    if file == SESSION_INFO_FILE && offset + data.len() as u64 > MAX_INFO {
        return Err(AgentError::invalid(format!(
            "{file} of a prune plan is over the limit of {MAX_INFO} bytes"
        )));
    }
    let path = tmp.join(file);
    let mut f = open_path_file(
        OpenOptions::new().append(true).create_new(offset == 0),
        &path,
    )
    .ctx(format_args!("cannot open {}", path.display()))?;
    let have = f
        .metadata()
        .ctx(format_args!("cannot stat {}", path.display()))?
        .len();
    if have != offset {
        return Err(AgentError::invalid(format!(
            "prune plan upload of {vol}: {file} holds {have} bytes, but the part starts at {offset}"
        )));
    }
    f.write_all(data.as_bytes())
        .ctx(format_args!("cannot write {}", path.display()))
}

fn open_plan(dir: &Path) -> Result<PlanReader<BufReader<File>>> {
    let p = dir.join(PLAN_FILE);
    let f = open_path_file(OpenOptions::new().read(true), &p)
        .ctx(format_args!("cannot open {}", p.display()))?;
    PlanReader::open(BufReader::new(f)).map_err(AgentError::invalid)
}

/// Read a whole plan, checking every line.
fn check_plan(dir: &Path) -> Result<PlanHead> {
    let mut r = open_plan(dir)?;
    for m in r.by_ref() {
        m.map_err(AgentError::invalid)?;
    }
    Ok(r.head)
}

fn same_file_contents(a: &Path, b: &Path) -> Result<bool> {
    let open = |p: &Path| File::open(p).ctx(format_args!("cannot open {}", p.display()));
    let (mut fa, mut fb) = (BufReader::new(open(a)?), BufReader::new(open(b)?));
    let (mut ba, mut bb) = ([0u8; 65536], [0u8; 65536]);
    loop {
        let n = fa
            .read(&mut ba)
            .ctx(format_args!("cannot read {}", a.display()))?;
        if n == 0 {
            let mut one = [0u8; 1];
            return Ok(fb.read(&mut one).ctx("read")? == 0);
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// `Prune`: check the uploaded plan, commit it, carry it out.
pub fn prune(
    a: &Archive,
    vol: &VolName,
    target: &SessionName,
    pruned: &[SessionName],
) -> Result<Pruned> {
    a.require_write()?;
    let head = PlanHead {
        vol: vol.clone(),
        target: target.clone(),
        pruned: pruned.to_vec(),
    };
    head.check().map_err(AgentError::invalid)?;
    settle(a, vol, Use::Prune)?;
    let vdir = vol_dir(a, vol)?;
    let tmp = vdir.join(PLAN_TMP);
    for f in PLAN_FILES {
        if !fs::symlink_metadata(tmp.join(f)).is_ok_and(|m| m.is_file()) {
            return Err(AgentError::invalid(format!(
                "the prune plan of {vol} was not uploaded completely ({f} is missing)"
            )));
        }
    }
    if check_plan(&tmp)? != head {
        return Err(AgentError::invalid(format!(
            "the uploaded prune plan of {vol} is not the one requested"
        )));
    }
    let (committed, _) = a.list_sessions(vol)?;
    if !committed.contains(&head.target) {
        return Err(AgentError::new(
            ErrorKind::NotFound,
            format!(
                "target session {} of {vol} is not in the archive",
                head.target
            ),
        ));
    }
    let present = head.pruned.iter().filter(|s| committed.contains(s)).count();
    if present == 0 {
        // An earlier run finished this prune, but dom0 never heard of it.
        let t = vdir.join(head.target.as_str());
        if same_file_contents(&tmp.join(MANIFEST_FILE), &t.join(MANIFEST_FILE))? {
            remove_tree(&tmp)?;
            return Ok(Pruned {
                moved: 0,
                already_done: true,
            });
        }
    }
    if present != head.pruned.len() {
        return Err(AgentError::new(
            ErrorKind::Mismatch,
            format!(
                "{} of the {} sessions of {vol} to prune are not in the archive: \
                 the destination was altered, rolled back, or pruned by another sparsebak",
                head.pruned.len() - present,
                head.pruned.len()
            ),
        ));
    }
    if let Some(s) = committed
        .iter()
        .find(|s| *s > &head.pruned[0] && *s < &head.target && !head.pruned.contains(s))
    {
        return Err(AgentError::invalid(format!(
            "session {s} of {vol} lies between the pruned sessions and {}, but is not pruned",
            head.target
        )));
    }
    for f in PLAN_FILES {
        let p = tmp.join(f);
        File::open(&p)
            .and_then(|f| f.sync_all())
            .ctx(format_args!("cannot fsync {}", p.display()))?;
    }
    fsync_dir(&tmp)?;
    let plan = vdir.join(PLAN_DIR);
    fs::rename(&tmp, &plan).ctx(format_args!("cannot commit {}", plan.display()))?;
    fsync_dir(&vdir)?;
    test_hooks::crash_at("plan");
    let moved = apply(&vdir, a.header()?.chunk_size.max_stored())?;
    Ok(Pruned {
        moved,
        already_done: false,
    })
}

fn errno(what: impl std::fmt::Display, e: AtError) -> AgentError {
    AgentError::io(what, io::Error::from(e))
}

fn is_regular_at(dir: &OwnedFd, name: &str) -> std::result::Result<bool, AtError> {
    dirfd::stat(dir, name).map(|st| dirfd::is_regular(&st))
}

/// An open fan-out directory, by name.
type Fan = Option<(String, Option<OwnedFd>)>;

/// Open (or reuse) fan-out dir `name` under `parent`; `None` inside if it
/// does not exist and `create` is false.
fn fan_dir<'a>(
    cache: &'a mut Fan,
    parent: &OwnedFd,
    name: &str,
    create: bool,
    shown: &Path,
) -> Result<Option<&'a OwnedFd>> {
    if cache
        .as_ref()
        .is_none_or(|(n, fd)| n != name || (create && fd.is_none()))
    {
        if create {
            dirfd::mkdir(parent, name)
                .map_err(|e| errno(format_args!("cannot create {}/{name}", shown.display()), e))?;
        }
        let fd = match dirfd::open_dir(parent, name) {
            Ok(fd) => Some(fd),
            Err(e) if e.errno == Errno::ENOENT && !create => None,
            Err(e) => {
                return Err(errno(
                    format_args!("cannot open {}/{name}", shown.display()),
                    e,
                ))
            }
        };
        *cache = Some((name.to_string(), fd));
    }
    Ok(cache.as_ref().and_then(|(_, fd)| fd.as_ref()))
}

/// Copy `src` over `dst` atomically: temp file, fsync, rename, fsync dir.
fn copy_atomic(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("tmp-write");
    remove_tree(&tmp)?;
    let mut from = File::open(src).ctx(format_args!("cannot open {}", src.display()))?;
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .ctx(format_args!("cannot create {}", tmp.display()))?;
    io::copy(&mut from, &mut to).ctx(format_args!("cannot write {}", tmp.display()))?;
    to.sync_all()
        .ctx(format_args!("cannot fsync {}", tmp.display()))?;
    fs::rename(&tmp, dst).ctx(format_args!("cannot replace {}", dst.display()))?;
    fsync_dir(dst.parent().expect("a file in a session dir"))
}

/// Carry out the committed plan in `vdir/.prune-plan`; idempotent, so a
/// replay after a crash at any point finishes the job. Returns the number
/// of chunk files (and tar part files, §13) renamed by this run.
fn apply(vdir: &Path, max_chunk: u64) -> Result<u64> {
    let plan_dir = vdir.join(PLAN_DIR);
    let mut reader = open_plan(&plan_dir)?;
    let head = reader.head.clone();
    let crash_after = test_hooks::crash_after_renames();
    let vfd = dirfd::open_path_dir(vdir).ctx(format_args!("cannot open {}", vdir.display()))?;
    let tdir = vdir.join(head.target.as_str());
    let tfd = dirfd::open_dir(&vfd, head.target.as_str())
        .map_err(|e| errno(format_args!("cannot open target {}", tdir.display()), e))?;
    // Per pruned session: its dir (None once removed) and its current fan-out dir.
    let mut sources: Vec<Option<(Option<OwnedFd>, Fan)>> =
        head.pruned.iter().map(|_| None).collect();
    let mut tfan: Fan = None;
    let mut moved = 0u64;
    let mut parts = PruneParts::new(&vfd, vdir, &head, &tfd, max_chunk)?;
    for m in reader.by_ref() {
        let m = m.map_err(AgentError::invalid)?;
        test_hooks::crash_after(crash_after, moved);
        let s: &SessionName = &head.pruned[m.session];
        let (fan, name) = (chunk_dir_name(m.addr), chunk_file_name(m.addr));
        let sdir = vdir.join(s.as_str());
        if sources[m.session].is_none() {
            let fd = optional(dirfd::open_dir(&vfd, s.as_str()))
                .map_err(|e| errno(format_args!("cannot open {}", sdir.display()), e))?;
            sources[m.session] = Some((fd, None));
        }
        let (sfd, sfan) = sources[m.session].as_mut().expect("just opened");
        let src = match sfd {
            Some(sfd) => fan_dir(sfan, sfd, &fan, false, &sdir)?,
            None => None,
        };
        let what = format!("{s}/{fan}/{name}");
        let renamed = match src {
            None => false,
            Some(src) => match is_regular_at(src, &name) {
                Err(e) if e.errno == Errno::ENOENT => false,
                Err(e) => return Err(errno(format_args!("cannot stat {what}"), e)),
                Ok(false) => {
                    return Err(AgentError::invalid(format!(
                        "{what} is not a regular file; refusing to move it"
                    )))
                }
                Ok(true) => {
                    let dst = fan_dir(&mut tfan, &tfd, &fan, true, &tdir)?.expect("created");
                    dirfd::rename(src, &name, dst, &name).map_err(|e| {
                        errno(format_args!("cannot move {what} into {}", head.target), e)
                    })?;
                    true
                }
            },
        };
        if renamed {
            moved += 1;
        } else if !fan_dir(&mut tfan, &tfd, &fan, false, &tdir)?
            .is_some_and(|dst| is_regular_at(dst, &name).unwrap_or(false))
            && !parts.resolve(m.session, m.addr)?
        {
            return Err(AgentError::new(
                ErrorKind::Mismatch,
                format!(
                    "cannot finish the prune of {}: chunk file {what} is missing and {}/{fan}/{name} \
                     does not exist; the archive was altered",
                    head.vol, head.target
                ),
            ));
        }
    }
    let mut crash_hook = |n: u64| test_hooks::crash_after(crash_after, moved + n);
    let part_files = parts.move_needed(&tfd, &mut crash_hook)?;
    crash_hook(part_files);
    moved += part_files;
    drop((sources, tfan, parts));
    syncfs(vdir)?;
    copy_atomic(&plan_dir.join(MANIFEST_FILE), &tdir.join(MANIFEST_FILE))?;
    copy_atomic(
        &plan_dir.join(SESSION_INFO_FILE),
        &tdir.join(SESSION_INFO_FILE),
    )?;
    test_hooks::crash_at("target");
    let aside = |s: &SessionName| vdir.join(format!("{s}{PRUNED_SUFFIX}"));
    for s in &head.pruned {
        let p = vdir.join(s.as_str());
        if exists(&p)? {
            remove_tree(&aside(s))?;
            fs::rename(&p, aside(s)).ctx(format_args!("cannot set aside {}", p.display()))?;
        }
    }
    fsync_dir(vdir)?;
    for s in &head.pruned {
        remove_tree(&aside(s))?;
    }
    test_hooks::crash_at("removed");
    let done = vdir.join(PLAN_DONE);
    remove_tree(&done)?;
    fs::rename(&plan_dir, &done).ctx(format_args!("cannot retire {}", plan_dir.display()))?;
    fsync_dir(vdir)?;
    remove_tree(&done)?;
    Ok(moved)
}
