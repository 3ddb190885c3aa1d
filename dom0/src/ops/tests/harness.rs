//! The world a whole-command test runs in: a thin volume in a [`FakeLvm`],
//! an archive in a temporary directory served by an in-process agent, and
//! local metadata beside it.

use crate::config::Config;
use crate::dest::{AgentConn, DestSpec};
use crate::local_meta::Meta;
use crate::lvm::fake::FakeLvm;
use crate::ops::add::{add, AddOptions};
use crate::ops::arch_init::{arch_init, InitOptions};
use crate::ops::context::{Connector, Ctx};
use crate::ops::receive::{receive, ReceiveOptions};
use crate::ops::resolve::Location;
use crate::ops::{Event, Ui};
use crate::progress::{Progress, Silent};
use crate::send::SendReport;
use anyhow::Result;
use sparsebak_common::names::SessionName;
use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const VOL: &str = "vm-a";
pub const CHUNK: usize = 64 * 1024;

/// Connects to the real agent library, serving in a thread of this
/// process over a socketpair.
///
/// A real agent is a process that has exited (and released the archive's
/// lock) by the time the next one starts; here the previous connection's
/// thread is waited for first (up to 2 s; a connection still open is
/// left alone), or a quick reconnect could find the archive locked.
#[derive(Default)]
pub struct InProcessAgent {
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl InProcessAgent {
    fn settle(&self) {
        let mut threads = self.threads.lock().unwrap();
        let t0 = std::time::Instant::now();
        while threads.iter().any(|t| !t.is_finished())
            && t0.elapsed() < std::time::Duration::from_secs(2)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let (done, open): (Vec<_>, Vec<_>) = threads.drain(..).partition(|t| t.is_finished());
        done.into_iter().for_each(|t| t.join().unwrap());
        *threads = open;
    }
}

impl Connector for InProcessAgent {
    fn connect(&self, _dest: &DestSpec) -> Result<AgentConn> {
        self.settle();
        let (ours, theirs) = UnixStream::pair()?;
        let input = theirs.try_clone()?;
        let t = std::thread::spawn(move || {
            let _ = sparsebak_agent::serve(input, theirs);
        });
        self.threads.lock().unwrap().push(t);
        let r = ours.try_clone()?;
        let mut c = AgentConn::from_pipes(Box::new(r), Box::new(ours), "in-process agent".into());
        c.hello()?;
        Ok(c)
    }
}

/// Answers yes, draws nothing, and keeps what happened.
#[derive(Default)]
pub struct Recorder {
    pub sent: RefCell<Vec<SendReport>>,
    pub events: RefCell<Vec<String>>,
}

impl Ui for Recorder {
    fn confirm(&self, _question: &str) -> Result<bool> {
        Ok(true)
    }
    fn confirm_typed(&self, _warning: &str, _question: &str, accepted: &[&str]) -> Result<bool> {
        Ok(!accepted.is_empty())
    }
    fn progress(&self) -> Box<dyn Progress> {
        Box::new(Silent)
    }
    fn event(&self, e: Event<'_>) {
        if let Event::Sent { report, .. } = &e {
            self.sent.borrow_mut().push((*report).clone());
        }
        self.events.borrow_mut().push(format!("{e:?}"));
    }
}

/// The mount point holding `dir` (the agent checks it).
fn mountpoint_of(dir: &Path) -> PathBuf {
    let dev = std::fs::metadata(dir).unwrap().dev();
    let mut mp = dir.to_path_buf();
    while let Some(parent) = mp.parent() {
        if std::fs::metadata(parent).unwrap().dev() != dev {
            break;
        }
        mp = parent.to_path_buf();
    }
    mp
}

/// Deterministic bytes that compress and hash like data, with every
/// fourth chunk zero.
pub fn volume_bytes(chunks: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut v = vec![0u8; chunks * CHUNK];
    for (i, b) in v.iter_mut().enumerate() {
        if (i / CHUNK) % 4 == 3 {
            continue;
        }
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 59) as u8;
    }
    v
}

pub struct World {
    pub tmp: tempfile::TempDir,
    pub lvm: FakeLvm,
    pub agent: InProcessAgent,
    pub meta: Meta,
    pub ui: Recorder,
}

impl World {
    /// An archive for the thin pool `vg/pool` with volume [`VOL`] added.
    pub fn thin(volume: Vec<u8>) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let arch = root.join("archive");
        std::fs::create_dir(&arch).unwrap();
        let mp = mountpoint_of(&arch);
        let lvm = FakeLvm::new();
        lvm.add_volume(VOL, volume);
        let w = World {
            meta: Meta::new(root.join("meta")),
            tmp,
            lvm,
            agent: InProcessAgent::default(),
            ui: Recorder::default(),
        };
        let o = InitOptions {
            location: Location {
                dest: Some(format!("internal:{}", mp.display())),
                subdir: Some(arch.strip_prefix(&mp).unwrap().display().to_string()),
                source: Some("vg/pool".into()),
            },
            ..Default::default()
        };
        arch_init(&w.meta, &w.agent, &o).unwrap();
        let a = AddOptions {
            volume: VOL.into(),
            path: None,
        };
        add(&mut w.ctx(), &a).unwrap();
        w
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            meta: self.meta.clone(),
            config: Config::load(&self.meta.root).unwrap(),
            connector: &self.agent,
            lvm: &self.lvm,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn sessions(&self) -> Vec<SessionName> {
        let vol = crate::ops::resolve::vol_name(VOL).unwrap();
        let chain = self.meta.chain(&vol).unwrap();
        chain.into_iter().map(|s| s.name).collect()
    }

    /// Restore `session` of [`VOL`] with the receive command.
    pub fn restore(&self, session: &SessionName) -> Vec<u8> {
        let out = self.path(&format!("restored-{}", session.timestamp()));
        let o = ReceiveOptions {
            volume: VOL.into(),
            save_to: Some(out.clone()),
            session: Some(session.timestamp().to_string()),
            ..Default::default()
        };
        receive(&self.ctx(), &self.ui, &o).unwrap();
        std::fs::read(out).unwrap()
    }

    /// The last send's report.
    pub fn last_sent(&self) -> SendReport {
        self.ui
            .sent
            .borrow()
            .last()
            .cloned()
            .expect("a send report")
    }

    pub fn events(&self) -> Vec<String> {
        self.ui.events.borrow().clone()
    }
}
