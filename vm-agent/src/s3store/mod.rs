//! The object-store backend (issue 16, docs/FORMAT.md §21): an archive in
//! an S3 bucket, for `--dest=…s3:NAME`. dom0 names the store; everything
//! else (endpoint, bucket, prefix, keys) is the agent's own configuration
//! ([`conf`]). Objects are written once and never renamed; a session
//! exists when its commit object does ([`put`]); readers go commit →
//! index → ranged reads of packs ([`get`]). Writers hold the lease of
//! §21.4 (crate::s3::lease) from open to the end of the session.
//!
//! It serves every request the file-system backend does (docs/FORMAT.md
//! §21.9); only 0.2 archives (`OpenLegacy`) cannot live in a store.

pub mod conf;
pub mod dedup;
pub mod delete;
pub mod get;
pub mod layout;
pub mod link;
pub mod prune;
pub mod put;
pub mod resume;

use crate::backend::{Backend, Input};
use crate::dedup::ops::Deduped;
use crate::error::{AgentError, Result};
use crate::prune_apply::{Pruned, Use};
use crate::s3::lease::{self, Lease, Record, Taken};
use crate::s3::{Client, Config, Credentials, PutOutcome, S3Error};
use crate::store::{Put, StoreStats};
use conf::StoreConf;
use layout::Keys;
use sparsebak_common::header::ArchiveHeader;
use sparsebak_common::legacy::LegacyVolName;
use sparsebak_common::names::{SessionName, VolName};
use sparsebak_common::proto::{ErrorKind, Response};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::time::Instant;

/// Largest header object accepted.
const MAX_HEADER: u64 = 64 * 1024;

/// An archive in a bucket.
pub struct S3Archive {
    /// Leaked once per agent process (it serves one archive), so the lease
    /// can borrow it for the life of the process.
    client: &'static Client,
    conf: StoreConf,
    creds: Credentials,
    cfg: Config,
    /// `<prefix>[<subdir>/]sparsebak/`
    root: String,
    header: Option<ArchiveHeader>,
    writable: bool,
    lease: RefCell<Option<(Lease<'static>, Instant)>>,
    /// What `PutSession` stored for the `Commit` that follows it.
    pending: RefCell<Option<put::Pending>>,
    /// A prune plan being uploaded (`PrunePart`).
    plan: RefCell<prune::Upload>,
}

/// An S3 failure as the agent reports it, naming the store.
pub fn s3_err(conf: &StoreConf, e: S3Error) -> AgentError {
    let kind = match &e {
        S3Error::NoSuchBucket { .. } => ErrorKind::NotFound,
        S3Error::LeaseLost { .. } => ErrorKind::Locked,
        S3Error::Config(_) => ErrorKind::Invalid,
        _ => ErrorKind::Io,
    };
    AgentError::new(kind, format!("store s3:{}: {e}", conf.name))
}

/// `s3:NAME` or `s3:NAME/SUB/DIR` (dom0's dest path): the subdir that
/// extends the store's prefix (`""` or `SUB/DIR/`).
fn split_dest(dest_path: &str, name: &str) -> Result<String> {
    let rest = dest_path
        .strip_prefix("s3:")
        .and_then(|r| r.strip_prefix(name))
        .ok_or_else(|| {
            AgentError::invalid(format!(
                "destination {dest_path:?} is not in store s3:{name}"
            ))
        })?;
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Ok(String::new()),
        Some(sub) => conf::clean_prefix(sub).map_err(AgentError::invalid),
        None => Err(AgentError::invalid(format!(
            "destination {dest_path:?} is not in store s3:{name}"
        ))),
    }
}

impl S3Archive {
    /// Open the archive in store `name` (`Open` with mountpoint `s3:NAME`).
    pub fn open(name: &str, dest_path: &str, write: bool) -> Result<S3Archive> {
        let conf = conf::load(name)?;
        let sub = split_dest(dest_path, name)?;
        let creds =
            crate::s3::creds::find(conf.credentials.as_deref(), &crate::s3::creds::ProcessEnv)
                .map_err(|e| AgentError::invalid(format!("store s3:{name}: {e}")))?;
        let cfg = client_config(&conf);
        S3Archive::open_with(conf, creds, cfg, &sub, write)
    }

    /// Open the archive under `<prefix><sub>` of the store `conf` names,
    /// with these keys and client settings (the tests' short timeouts).
    pub fn open_with(
        conf: StoreConf,
        creds: Credentials,
        cfg: Config,
        sub: &str,
        write: bool,
    ) -> Result<S3Archive> {
        let client = Client::new(cfg.clone(), creds.clone()).map_err(|e| s3_err(&conf, e))?;
        let client: &'static Client = Box::leak(Box::new(client));
        client.check_bucket().map_err(|e| s3_err(&conf, e))?;
        let root = format!("{}{sub}{}/", conf.prefix, sparsebak_common::ARCHIVE_DIR);
        let mut a = S3Archive {
            client,
            conf,
            creds,
            cfg,
            root,
            header: None,
            writable: write,
            lease: RefCell::new(None),
            pending: RefCell::new(None),
            plan: RefCell::new(prune::Upload::default()),
        };
        a.header = a.read_header()?;
        if write && a.header.is_some() {
            a.take_lease()?;
        }
        Ok(a)
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys { root: &self.root }
    }

    pub fn client(&self) -> &Client {
        self.client
    }

    pub fn conf(&self) -> &StoreConf {
        &self.conf
    }

    /// A second client for another thread (the pack uploader).
    pub fn new_client(&self) -> Result<Client> {
        Client::new(self.cfg.clone(), self.creds.clone()).map_err(|e| self.err(e))
    }

    pub fn err(&self, e: S3Error) -> AgentError {
        s3_err(&self.conf, e)
    }

    /// Where the archive is, for messages.
    pub fn describe(&self) -> String {
        format!(
            "s3:{} (bucket {} at {}, {})",
            self.conf.name, self.conf.bucket, self.conf.endpoint, self.root
        )
    }

    pub fn header(&self) -> Result<&ArchiveHeader> {
        self.header.as_ref().ok_or_else(|| {
            AgentError::new(
                ErrorKind::NotFound,
                format!("no sparsebak archive in {}", self.describe()),
            )
        })
    }

    /// The header, and the lease still ours (renewed when a third of it
    /// has passed): before every write.
    pub fn require_write(&self) -> Result<()> {
        self.header()?;
        let mut slot = self.lease.borrow_mut();
        let Some((lease, at)) = slot.as_mut() else {
            return Err(AgentError::invalid("archive was opened read-only"));
        };
        if at.elapsed().as_secs() >= self.conf.lease_secs / 3 {
            lease.renew().map_err(|e| s3_err(&self.conf, e))?;
            *at = Instant::now();
        }
        Ok(())
    }

    /// The lease is ours with a third of it to spare (before a commit).
    pub fn check_lease(&self) -> Result<()> {
        self.require_write()?;
        match self.lease.borrow().as_ref() {
            Some((l, _)) => l.check().map_err(|e| self.err(e)),
            None => Err(AgentError::invalid("archive was opened read-only")),
        }
    }

    /// TEST HOOK (`SPARSEBAK_AGENT_CRASH_AT`, test builds only): abort at
    /// `point` as a killed agent stops, except that the lease is released
    /// first, so a suite need not wait out `lease_secs` after each crash (a
    /// crashed holder's lease running out is tested in it/s3/lease.rs).
    pub fn crash_at(&self, point: &str) {
        if crate::test_hooks::crash_wanted(point) {
            if let Some((l, _)) = self.lease.borrow_mut().take() {
                let _ = l.release();
            }
            crate::test_hooks::crash_at(point);
        }
    }

    fn take_lease(&mut self) -> Result<()> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let me = Record::mine(host.trim(), self.conf.lease_secs)
            .map_err(|e| AgentError::io("cannot make a lease owner id", e))?;
        match lease::take(self.client, &self.root, me).map_err(|e| self.err(e))? {
            Taken::Ours(l) => {
                *self.lease.borrow_mut() = Some((l, Instant::now()));
                Ok(())
            }
            Taken::Locked { holder, until } => Err(AgentError::new(
                ErrorKind::Locked,
                format!(
                    "archive {} is locked by another sparsebak (host {:?}, pid {}); its lease ends at {} (the store's clock, UTC) unless renewed",
                    self.describe(),
                    holder.host,
                    holder.pid,
                    crate::s3::sigv4::amz_date(until)
                ),
            )),
        }
    }

    /// `RewrapKey` (arch-passwd): replace the header by one that differs
    /// only in its wrapped key and MAC. The one object ever overwritten
    /// (docs/FORMAT.md §21.1): under the lease, by one PUT, which a reader
    /// sees whole, old or new.
    fn rewrap_key(&mut self, header_json: &str) -> Result<()> {
        self.check_lease()?;
        let new = self
            .header()?
            .rewrapped(header_json.as_bytes())
            .map_err(AgentError::invalid)?;
        let key = self.keys().header();
        self.client
            .put(&key, header_json.as_bytes())
            .map_err(|e| self.err(e))?;
        self.header = Some(new);
        Ok(())
    }

    /// Volumes or packs without a header: left by an interrupted
    /// arch-delete, or someone else's objects. Never mixed into a new archive.
    fn refuse_leftovers(&self) -> Result<()> {
        for dir in [self.keys().volumes(), self.keys().data_dir()] {
            let page = self
                .client
                .list_page(&dir, None, 1)
                .map_err(|e| self.err(e))?;
            if let Some(e) = page.objects.first() {
                return Err(AgentError::new(
                    ErrorKind::Exists,
                    format!(
                        "{} holds objects but no archive header (such as {}): an interrupted arch-delete, \
                         or not sparsebak's; remove them or use another prefix or --subdir",
                        self.describe(),
                        e.key
                    ),
                ));
            }
        }
        Ok(())
    }

    fn read_header(&self) -> Result<Option<ArchiveHeader>> {
        let key = self.keys().header();
        let Some(b) = self.client.get(&key, MAX_HEADER).map_err(|e| self.err(e))? else {
            return Ok(None);
        };
        ArchiveHeader::parse(&b)
            .map(Some)
            .map_err(|e| AgentError::invalid(format!("{} {key}: {e}", self.describe())))
    }

    fn init(&mut self, header_json: &str) -> Result<()> {
        if !self.writable {
            return Err(AgentError::invalid("archive was opened read-only"));
        }
        let there = self.describe();
        let exists = || {
            AgentError::new(
                ErrorKind::Exists,
                format!("an archive already exists in {there}"),
            )
        };
        if self.header.is_some() {
            return Err(exists());
        }
        let header = ArchiveHeader::parse(header_json.as_bytes()).map_err(AgentError::invalid)?;
        self.refuse_leftovers()?;
        self.take_lease()?;
        let key = self.keys().header();
        match self
            .client
            .put_new(&key, header_json.as_bytes())
            .map_err(|e| self.err(e))?
        {
            PutOutcome::Created => {
                self.header = Some(header);
                Ok(())
            }
            PutOutcome::Exists => Err(exists()),
        }
    }
}

fn client_config(c: &StoreConf) -> Config {
    let mut cfg = Config::new(&c.endpoint, &c.bucket, &c.region);
    cfg.ca_file = c.ca_file.clone();
    cfg
}

impl Drop for S3Archive {
    fn drop(&mut self) {
        if let Some((l, _)) = self.lease.get_mut().take() {
            if let Err(e) = l.release() {
                crate::say::say(format_args!(
                    "could not release the lease of {}: {e} (it ends by itself)",
                    self.describe()
                ));
            }
        }
    }
}

impl Backend for S3Archive {
    fn header_json(&self) -> Option<String> {
        self.header
            .as_ref()
            .map(|h| serde_json::to_string(h).expect("header serialises"))
    }
    fn is_legacy(&self) -> bool {
        false
    }
    fn settle(&self, vol: &VolName, _why: Use) -> Result<()> {
        // An interrupted volume deletion or prune is finished (when the
        // archive is open for writing; readers read what exists, whole).
        delete::settle(self, vol)?;
        prune::settle(self, vol)
    }
    fn init(&mut self, header_json: &str) -> Result<()> {
        S3Archive::init(self, header_json)
    }
    fn rewrap_key(&mut self, header_json: &str) -> Result<()> {
        S3Archive::rewrap_key(self, header_json)
    }
    fn list_volumes(&self) -> Result<(Vec<VolName>, Vec<String>)> {
        get::list_volumes(self)
    }
    fn list_sessions(&self, vol: &VolName) -> Result<(Vec<SessionName>, Vec<String>)> {
        let s = get::sessions(self, vol)?;
        Ok((s.into_keys().collect(), Vec::new()))
    }
    fn session_digests(&self, vol: &VolName, after: Option<&SessionName>) -> Result<Response> {
        get::session_digests(self, vol, after)
    }
    fn put_session(&self, p: &Put<'_>, stream: &mut dyn Read) -> Result<StoreStats> {
        put::put_session(self, p, stream)
    }
    fn resume_check(
        &self,
        vol: &VolName,
        session: &SessionName,
        after: Option<u64>,
    ) -> Result<(u64, bool, Vec<u8>)> {
        resume::check(self, vol, session, after)
    }
    fn commit(&self, vol: &VolName, session: &SessionName, volume_info: &str) -> Result<()> {
        put::commit(self, vol, session, volume_info)
    }
    fn read_files(
        &self,
        ours: Option<&VolName>,
        _vol: &LegacyVolName,
        r: &mut Input<'_>,
        w: &mut dyn Write,
    ) -> Result<()> {
        let vol = ours.ok_or_else(|| AgentError::invalid("no volume"))?;
        get::read_files(self, vol, r, w)
    }
    fn read_meta(&self, vol: &VolName, path: &str, offset: u64) -> Result<(u64, Vec<u8>)> {
        get::read_meta(self, vol, path, offset)
    }
    fn delete_volume(&self, vol: &VolName) -> Result<()> {
        delete::delete_volume(self, vol)
    }
    fn prune_part(&self, vol: &VolName, file: &str, offset: u64, data: &str) -> Result<()> {
        prune::put_part(self, vol, file, offset, data)
    }
    fn prune(&self, vol: &VolName, target: &SessionName, pruned: &[SessionName]) -> Result<Pruned> {
        prune::prune(self, vol, target, pruned)
    }
    fn delete_archive(&self, uuid: &str) -> Result<()> {
        delete::delete_archive(self, uuid)
    }
    fn check_hardlinks(&self) -> Result<()> {
        // Sessions share chunk files by reference here (crate::s3store::link).
        self.require_write()
    }
    fn dedup(&self, stream: &mut dyn Read) -> Result<Deduped> {
        dedup::dedup(self, stream)
    }
}
