//! Generates sparsebak 0.2 archives ("format 1") the way 0.2 wrote them, so
//! the legacy reader is tested against fresh, documented bytes instead of
//! checked-in binaries (reference: sparsebak-0.2-behaviour.md §2, §4, §5, §8).
//!
//! * Local metadata under `<meta>/default/`: `archive.ini` ([var], [volumes]),
//!   `<vol>/volinfo`, `<vol>/S_*/{info,manifest}`.
//! * Destination under `<dest>/sparsebak/default/`: chunk files
//!   `<vol>/S_*/<9hex>/x<16hex>` (zlib level 4; gzip level 4 for pre-2019
//!   archives), copies of info, manifest, volinfo and archive.ini, and the
//!   `archive.dat`/`.set` markers.
//! * send: the first session is full; later ones carry the chunks whose bytes
//!   changed (what thin_delta would flag) plus every chunk at or beyond
//!   `last_chunk_addr(previous size) + chunksize` when the volume grew; all-zero
//!   chunks below the last are `0` lines without a file; the last chunk is
//!   stored whenever it is sent, even if zero, and may be short.
//! * prune: 0.2's merge (§8.2): files move into the oldest pruned dir, which
//!   becomes the target; the target's manifest becomes the union cut at its
//!   size; sequences are not renumbered.
//!
//! Every session's source image is kept, so tests compare what comes back.
#![allow(dead_code)]

mod cases;
pub use cases::*;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use sha2::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Session {
    pub name: String,
    pub volsize: u64,
    pub sequence: u64,
    pub previous: Option<String>,
    /// The source bytes this session restores.
    pub image: Vec<u8>,
}

#[derive(Default)]
pub struct Volume {
    pub sessions: Vec<Session>,
    pub uuid: String,
}

pub struct Legacy {
    pub meta: PathBuf,
    pub dest: PathBuf,
    pub chunk: u64,
    /// Pre-2019 archives: gzip chunks, `chunksize` in every info, an empty
    /// file stored for every zero chunk.
    pub old_style: bool,
    pub destsys: String,
    pub mountpoint: String,
    pub destdir: String,
    pub vols: BTreeMap<String, Volume>,
    /// Extra `[volumes]` lines (e.g. disabled or hostile names).
    pub extra_volume_lines: Vec<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&sha2::Sha256::digest(b))
}

pub fn last_chunk_addr(size: u64, cs: u64) -> u64 {
    (size - 1) - ((size - 1) % cs)
}

pub fn chunk_rel(addr: u64) -> String {
    let a = format!("{addr:016x}");
    format!("{}/x{a}", &a[..9])
}

impl Legacy {
    /// A 0.2 archive with metadata in `<meta>/default` and chunks under
    /// `<dest>/sparsebak/default`, reached as `internal:` + the mountpoint of `dest`.
    pub fn new(meta: &Path, dest: &Path, chunk: u64, old_style: bool) -> Legacy {
        let mp = super::common::mount_point_of(dest);
        let rel = dest
            .strip_prefix(&mp)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let l = Legacy {
            meta: meta.to_path_buf(),
            dest: dest.to_path_buf(),
            chunk,
            old_style,
            destsys: "internal:".into(),
            mountpoint: mp.to_string_lossy().into_owned(),
            destdir: if rel.is_empty() {
                ".".into()
            } else {
                format!("./{rel}")
            },
            vols: BTreeMap::new(),
            extra_volume_lines: Vec::new(),
        };
        l.write_ini();
        l
    }

    pub fn local_set(&self) -> PathBuf {
        self.meta.join("default")
    }
    pub fn remote_set(&self) -> PathBuf {
        self.dest.join("sparsebak/default")
    }
    pub fn local_vol(&self, vol: &str) -> PathBuf {
        self.local_set().join(vol)
    }
    pub fn remote_vol(&self, vol: &str) -> PathBuf {
        self.remote_set().join(vol)
    }
    pub fn chunk_file(&self, vol: &str, ses: &str, addr: u64) -> PathBuf {
        self.remote_vol(vol)
            .join(format!("S_{ses}"))
            .join(chunk_rel(addr))
    }

    pub fn ini_text(&self) -> String {
        let mut s = format!(
            "[var]\nchunksize = {}\ncompression = zlib\ncompr_level = 4\nhashtype = sha256\nvgname = qubes_dom0\npoolname = pool00\ndestsys = {}\ndestdir = {}\ndestmountpoint = {}\nuuid = 3f1c5e2a-0000-4000-8000-000000000001\n\n[volumes]\n",
            self.chunk, self.destsys, self.destdir, self.mountpoint
        );
        for v in self.vols.keys() {
            s.push_str(&format!("{v} = enable\n"));
        }
        for l in &self.extra_volume_lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn write_ini(&self) {
        for d in [self.local_set(), self.remote_set()] {
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("archive.ini"), self.ini_text()).unwrap();
        }
        fs::write(self.dest.join("sparsebak/archive.dat"), b"").unwrap();
        fs::write(self.remote_set().join(".set"), b"").unwrap();
    }

    fn compress(&self, data: &[u8]) -> Vec<u8> {
        if self.old_style {
            let mut e = GzEncoder::new(Vec::new(), Compression::new(4));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::new(4));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }

    fn volinfo_text(&self, vol: &str) -> String {
        let v = &self.vols[vol];
        let first = v
            .sessions
            .first()
            .map(|s| s.name.clone())
            .unwrap_or("None".into());
        let last = v
            .sessions
            .last()
            .map(|s| s.name.clone())
            .unwrap_or("None".into());
        format!(
            "format_ver = 1\nuuid = {}\nfirst = {first}\nlast = {last}\nque_meta_update = false\n",
            v.uuid
        )
    }

    fn info_text(&self, s: &Session) -> String {
        let mut t = format!(
            "localtime = {}\nvolsize = {}\nformat = folders\nsequence = {}\nprevious = {}\n",
            &s.name[2..],
            s.volsize,
            s.sequence,
            s.previous.as_deref().unwrap_or("none")
        );
        if self.old_style {
            t.push_str(&format!(
                "chunksize = {}\nchunks = 0\nbytes = 0\nzeros = 0\n",
                self.chunk
            ));
        }
        t
    }

    /// Write info and manifest (locally and remotely) and both volinfos.
    fn write_session_meta(&self, vol: &str, s: &Session, manifest: &str) {
        for base in [self.local_vol(vol), self.remote_vol(vol)] {
            let d = base.join(&s.name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("info"), self.info_text(s)).unwrap();
            fs::write(d.join("manifest"), manifest).unwrap();
            fs::write(base.join("volinfo"), self.volinfo_text(vol)).unwrap();
        }
    }

    /// 0.2's send of `image` as session `ts` (YYYYMMDD-HHMMSS). Returns false
    /// when nothing was flagged (0.2 then creates no session).
    pub fn send(&mut self, vol: &str, ts: &str, image: &[u8]) -> bool {
        let cs = self.chunk;
        let name = format!("S_{ts}");
        let size = image.len() as u64;
        assert!(size > 0);
        if !self.vols.contains_key(vol) {
            self.vols.insert(
                vol.into(),
                Volume {
                    sessions: Vec::new(),
                    uuid: format!("uuid-of-{vol}"),
                },
            );
            self.write_ini();
        }
        let prev = self.vols[vol].sessions.last();
        let (sendall, prev_img) = match prev {
            None => (0, Vec::new()),
            Some(p) => {
                let next = last_chunk_addr(p.volsize, cs) + cs;
                (
                    // 0.2: `if size-1 >= next` (growth past the old last chunk)
                    if size > next { next } else { size + 1 },
                    p.image.clone(),
                )
            }
        };
        let first = prev.is_none();
        let last = last_chunk_addr(size, cs);
        let mut manifest = String::new();
        let mut files = Vec::new();
        let mut addr = 0;
        while addr < size {
            let end = (addr + cs).min(size);
            let data = &image[addr as usize..end as usize];
            let old: Vec<u8> = (addr..end)
                .map(|i| prev_img.get(i as usize).copied().unwrap_or(0))
                .collect();
            let flagged = first || data != &old[..];
            if addr >= sendall || flagged {
                if data.iter().all(|b| *b == 0) && addr < last {
                    manifest.push_str(&format!("0 x{addr:016x}\n"));
                    if self.old_style {
                        files.push((addr, Vec::new()));
                    }
                } else {
                    let z = self.compress(data);
                    manifest.push_str(&format!("{} x{addr:016x}\n", sha256_hex(&z)));
                    files.push((addr, z));
                }
            }
            addr += cs;
        }
        if manifest.is_empty() {
            return false;
        }
        let v = self.vols.get_mut(vol).unwrap();
        let s = Session {
            name: name.clone(),
            volsize: size,
            sequence: v.sessions.last().map(|p| p.sequence + 1).unwrap_or(0),
            previous: v.sessions.last().map(|p| p.name.clone()),
            image: image.to_vec(),
        };
        v.sessions.push(s);
        for (addr, z) in files {
            let p = self.remote_vol(vol).join(&name).join(chunk_rel(addr));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, z).unwrap();
        }
        let s = self.vols[vol].sessions.last().unwrap();
        self.write_session_meta(vol, s, &manifest);
        true
    }

    fn read_manifest(&self, vol: &str, ses: &str) -> Vec<(u64, String)> {
        fs::read_to_string(self.local_vol(vol).join(ses).join("manifest"))
            .unwrap()
            .lines()
            .map(|l| {
                let (h, a) = l.split_once(' ').unwrap();
                (u64::from_str_radix(&a[1..], 16).unwrap(), h.to_string())
            })
            .collect()
    }

    /// 0.2's prune (§8.2) of the sessions `first..=last` (timestamps) into
    /// the session right after them.
    pub fn prune(&mut self, vol: &str, first: &str, last: &str) {
        let cs = self.chunk;
        let names: Vec<String> = self.vols[vol]
            .sessions
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let i = names
            .iter()
            .position(|n| n == &format!("S_{first}"))
            .unwrap();
        let j = names
            .iter()
            .position(|n| n == &format!("S_{last}"))
            .unwrap();
        assert!(
            i <= j && j + 1 < names.len(),
            "cannot prune the newest session"
        );
        let s0 = names[i].clone();
        let t = names[j + 1].clone();
        let t_size = self.vols[vol].sessions[j + 1].volsize;
        let lastaddr = last_chunk_addr(t_size, cs);
        // manifest.tmp: union of [T, sk..s1], newest wins, tagged.
        let mut tmp: BTreeMap<u64, (String, String)> = BTreeMap::new();
        for n in std::iter::once(&t).chain(names[i + 1..=j].iter().rev()) {
            for (a, h) in self.read_manifest(vol, n) {
                tmp.entry(a).or_insert((h, n.clone()));
            }
        }
        let mut new: BTreeMap<u64, String> =
            tmp.iter().map(|(a, (h, _))| (*a, h.clone())).collect();
        for (a, h) in self.read_manifest(vol, &s0) {
            new.entry(a).or_insert(h);
        }
        // Destination: move newer data into s0, drop newer zero chunks' old data.
        let rv = self.remote_vol(vol);
        for (a, (h, n)) in &tmp {
            if *a > lastaddr {
                continue;
            }
            let dst = rv.join(&s0).join(chunk_rel(*a));
            if h == "0" {
                let _ = fs::remove_file(&dst);
            } else {
                let src = rv.join(n).join(chunk_rel(*a));
                if src.exists() {
                    fs::create_dir_all(dst.parent().unwrap()).unwrap();
                    fs::rename(&src, &dst).unwrap();
                }
            }
        }
        for n in std::iter::once(&t).chain(names[i + 1..=j].iter()) {
            fs::remove_dir_all(rv.join(n)).unwrap();
        }
        fs::rename(rv.join(&s0), rv.join(&t)).unwrap();
        // Local metadata: unlink the pruned sessions; T keeps its sequence.
        let v = self.vols.get_mut(vol).unwrap();
        let prev = v.sessions[i].previous.clone();
        v.sessions.drain(i..=j);
        v.sessions[i].previous = prev;
        for n in &names[i..=j] {
            fs::remove_dir_all(self.local_vol(vol).join(n)).unwrap();
        }
        let manifest: String = new
            .iter()
            .filter(|(a, _)| **a <= lastaddr)
            .map(|(a, h)| format!("{h} x{a:016x}\n"))
            .collect();
        let s = &self.vols[vol].sessions[i];
        self.write_session_meta(vol, s, &manifest);
    }

    /// A crashed send's leftover `-tmp` session on both sides (0.2 never
    /// cleaned them up); readers must ignore it.
    pub fn leftover_tmp(&self, vol: &str, ts: &str) {
        for base in [self.local_vol(vol), self.remote_vol(vol)] {
            let d = base.join(format!("S_{ts}-tmp"));
            fs::create_dir_all(d.join("000000000")).unwrap();
            fs::write(d.join("manifest"), "garbage\n").unwrap();
            fs::write(d.join("000000000/x0000000000000000"), "garbage").unwrap();
        }
    }

    pub fn session(&self, vol: &str, ts: &str) -> &Session {
        self.vols[vol]
            .sessions
            .iter()
            .find(|s| s.name == format!("S_{ts}"))
            .unwrap()
    }

    pub fn timestamps(&self, vol: &str) -> Vec<String> {
        self.vols[vol]
            .sessions
            .iter()
            .map(|s| s.name[2..].to_string())
            .collect()
    }
}

/// A deterministic image: zero, text and random chunks.
pub fn image(len: u64, cs: u64, seed: u64) -> Vec<u8> {
    let mut v = super::common::random_bytes(len, seed);
    let mut c = 0;
    while c * cs < len {
        let (a, b) = ((c * cs) as usize, ((c + 1) * cs).min(len) as usize);
        match (c + seed) % 4 {
            0 => v[a..b].fill(0),
            1 => {
                for (k, x) in v[a..b].iter_mut().enumerate() {
                    *x = b"sparsebak 0.2 archive text "[k % 27];
                }
            }
            _ => {}
        }
        c += 1;
    }
    v
}

/// Overwrite `n` chunks (every `step`-th from chunk `from`) with new random bytes.
pub fn touch(img: &mut [u8], cs: u64, from: u64, step: u64, n: u64, seed: u64) {
    let r = super::common::random_bytes(cs, seed);
    for k in 0..n {
        let a = ((from + k * step) * cs) as usize;
        if a >= img.len() {
            break;
        }
        let b = (a + cs as usize).min(img.len());
        img[a..b].copy_from_slice(&r[..b - a]);
    }
}

/// Zero `n` chunks from chunk `from`.
pub fn zero(img: &mut [u8], cs: u64, from: u64, n: u64) {
    let a = ((from * cs) as usize).min(img.len());
    let b = (((from + n) * cs) as usize).min(img.len());
    img[a..b].fill(0);
}
