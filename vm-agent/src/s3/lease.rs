//! The writer lease of an object-store archive (docs/FORMAT.md §21.4): a
//! chain of write-once records `<prefix>lock/<gen>`, each made with a
//! conditional create, the highest generation deciding. No overwrite and
//! no `If-Match` (which Ceph Pacific gets wrong), and expiry judged by the
//! store's clock (a record's Last-Modified against the Date of the
//! listing), so a crashed writer holds the archive at most one lease and a
//! VM with a wrong clock can neither steal nor keep one.
//!
//! Used by the object-store backend (crate::s3store) from open to close.

use super::client::{Client, Entry, PutOutcome};
use super::error::{S3Error, S3Result};
use std::io::Read;

const MAX_RECORD: u64 = 4096;
/// Longest lease a record may claim (a record claiming more is refused).
pub const MAX_LEASE_SECS: u64 = 86_400;
/// Most records a lock dir may hold (each writer deletes the ones below its own).
const MAX_RECORDS: u32 = 1000;

/// One lease record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 128 random bits in hex: who holds it.
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub lease_secs: u64,
    /// `held`, or `free` (released).
    pub held: bool,
}

impl Record {
    /// A new owner on this host and process.
    pub fn mine(host: &str, lease_secs: u64) -> std::io::Result<Record> {
        let mut b = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        Ok(Record {
            owner: super::sigv4::hex(&b),
            host: host.chars().take(200).collect(),
            pid: std::process::id(),
            lease_secs: lease_secs.clamp(1, MAX_LEASE_SECS),
            held: true,
        })
    }

    fn to_json(&self, held: bool) -> Vec<u8> {
        serde_json::json!({
            "owner": self.owner, "host": self.host, "pid": self.pid,
            "lease_secs": self.lease_secs, "state": if held { "held" } else { "free" },
        })
        .to_string()
        .into_bytes()
    }

    fn parse(b: &[u8]) -> Result<Record, String> {
        let v: serde_json::Value = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        let s = |k: &str| v[k].as_str().filter(|s| s.len() <= 200).map(str::to_string);
        let n = |k: &str| v[k].as_u64();
        let held = match v["state"].as_str() {
            Some("held") => true,
            Some("free") => false,
            _ => return Err("state is neither held nor free".into()),
        };
        Ok(Record {
            owner: s("owner").ok_or("no owner")?,
            host: s("host").ok_or("no host")?,
            pid: n("pid")
                .and_then(|p| u32::try_from(p).ok())
                .ok_or("no pid")?,
            lease_secs: n("lease_secs")
                .filter(|l| (1..=MAX_LEASE_SECS).contains(l))
                .ok_or("lease_secs missing or out of range")?,
            held,
        })
    }
}

/// [`Record::parse`] for the fuzz target (`crate::fuzzing`): the record
/// written back, which must parse to the same record.
#[doc(hidden)]
pub fn fuzz_parse_record(b: &[u8]) -> Result<String, String> {
    let r = Record::parse(b)?;
    let again = Record::parse(&r.to_json(r.held))?;
    assert_eq!(again, r, "a lease record does not survive its own writing");
    Ok(r.owner)
}

/// What `take` found.
pub enum Taken<'c> {
    Ours(Lease<'c>),
    /// Another writer holds it until `until` (store clock, epoch seconds).
    Locked {
        holder: Record,
        until: u64,
    },
}

/// A lease this process holds.
pub struct Lease<'c> {
    client: &'c Client,
    prefix: String,
    me: Record,
    gen: u32,
}

/// The highest record, if any, every generation listed, and the store's time.
struct Top {
    top: Option<(u32, Entry, Record)>,
    all: Vec<u32>,
    now: u64,
    /// The highest record went between listing and reading it.
    raced: bool,
}

fn lock_key(prefix: &str, gen: u32) -> String {
    format!("{prefix}lock/{gen:08x}")
}

fn bad(prefix: &str, what: String) -> S3Error {
    S3Error::Malformed {
        op: "lease",
        key: format!("{prefix}lock/"),
        what,
    }
}

fn read_top(client: &Client, prefix: &str) -> S3Result<Top> {
    let dir = format!("{prefix}lock/");
    let page = client.list_page(&dir, None, MAX_RECORDS)?;
    if page.next.is_some() {
        return Err(bad(
            prefix,
            format!("more than {MAX_RECORDS} lease records"),
        ));
    }
    let now = page
        .server_time
        .ok_or_else(|| bad(prefix, "the store's answer has no Date".into()))?;
    let mut gens = Vec::new();
    for e in &page.objects {
        let name = &e.key[dir.len()..];
        let ok = name.len() == 8 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match u32::from_str_radix(name, 16) {
            Ok(g) if ok && g > 0 => gens.push((g, e.clone())),
            _ => return Err(bad(prefix, format!("unexpected object {:?}", e.key))),
        }
    }
    let all: Vec<u32> = gens.iter().map(|(g, _)| *g).collect();
    let Some((g, e)) = gens.into_iter().max_by_key(|(g, _)| *g) else {
        return Ok(Top {
            top: None,
            all,
            now,
            raced: false,
        });
    };
    let Some(body) = client.get(&e.key, MAX_RECORD)? else {
        // Deleted since the listing: a writer moved on; the caller reads again.
        return Ok(Top {
            top: None,
            all,
            now,
            raced: true,
        });
    };
    let rec = Record::parse(&body).map_err(|w| bad(prefix, format!("{}: {w}", e.key)))?;
    Ok(Top {
        top: Some((g, e, rec)),
        all,
        now,
        raced: false,
    })
}

/// Take the lease of the archive at `prefix` (`""` or ending in `/`) as
/// `me`, unless another writer's lease is still running.
pub fn take<'c>(client: &'c Client, prefix: &str, me: Record) -> S3Result<Taken<'c>> {
    for _ in 0..8 {
        let t = read_top(client, prefix)?;
        if t.raced {
            continue;
        }
        let next = match &t.top {
            None => 1,
            Some((_, e, r)) if r.held && t.now < e.modified + r.lease_secs => {
                let until = e.modified + r.lease_secs;
                return Ok(Taken::Locked {
                    holder: r.clone(),
                    until,
                });
            }
            Some((g, _, _)) => g
                .checked_add(1)
                .ok_or_else(|| bad(prefix, "generation overflow".into()))?,
        };
        let key = lock_key(prefix, next);
        if client.put_new(&key, &me.to_json(true))? == PutOutcome::Created {
            let lease = Lease {
                client,
                prefix: prefix.to_string(),
                me,
                gen: next,
            };
            lease.delete_below()?;
            return Ok(Taken::Ours(lease));
        }
        // Another writer made that generation first: look again.
    }
    Err(bad(
        prefix,
        "the lease changed hands 8 times while taking it".into(),
    ))
}

impl Lease<'_> {
    pub fn generation(&self) -> u32 {
        self.gen
    }

    /// Still ours, with a third of the lease to spare (before a commit and
    /// before every batch of deletes).
    pub fn check(&self) -> S3Result<()> {
        let t = read_top(self.client, &self.prefix)?;
        let lost = |why: &str| S3Error::LeaseLost {
            key: lock_key(&self.prefix, self.gen),
            why: why.to_string(),
        };
        match &t.top {
            Some((g, e, r)) if *g == self.gen && r.owner == self.me.owner => {
                if t.now + self.me.lease_secs / 3 >= e.modified + self.me.lease_secs {
                    return Err(lost("it has (nearly) run out"));
                }
                Ok(())
            }
            Some((_, _, r)) => Err(lost(&format!("{} (pid {}) holds it now", r.host, r.pid))),
            None if t.raced => Err(lost("its record was replaced")),
            None => Err(lost("its record is gone")),
        }
    }

    /// Extend the lease: a new generation, then the old ones go.
    pub fn renew(&mut self) -> S3Result<()> {
        self.check()?;
        self.next_record(true)
    }

    /// Give the lease up (a `free` record); a lease already lost is fine.
    pub fn release(mut self) -> S3Result<()> {
        match self.check() {
            Err(S3Error::LeaseLost { .. }) => Ok(()),
            Err(e) => Err(e),
            Ok(()) => self.next_record(false),
        }
    }

    fn next_record(&mut self, held: bool) -> S3Result<()> {
        let next = self.gen + 1;
        match self
            .client
            .put_new(&lock_key(&self.prefix, next), &self.me.to_json(held))?
        {
            PutOutcome::Created => {
                self.gen = next;
                self.delete_below()
            }
            PutOutcome::Exists => Err(S3Error::LeaseLost {
                key: lock_key(&self.prefix, self.gen),
                why: "another writer made the next record".into(),
            }),
        }
    }

    fn delete_below(&self) -> S3Result<()> {
        let t = read_top(self.client, &self.prefix)?;
        for g in t.all.into_iter().filter(|g| *g < self.gen) {
            self.client.delete(&lock_key(&self.prefix, g))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let r = Record::mine("sys-backup", 600).unwrap();
        assert_eq!(r.owner.len(), 32);
        assert_eq!(Record::parse(&r.to_json(true)).unwrap(), r);
        let free = Record::parse(&r.to_json(false)).unwrap();
        assert!(!free.held);
        let seed = br#"{"owner":"00112233445566778899aabbccddeeff","host":"h","pid":1,"lease_secs":600,"state":"held"}"#;
        assert_eq!(
            fuzz_parse_record(seed).unwrap(),
            "00112233445566778899aabbccddeeff"
        );
        for bad in [
            &br#"{"owner":"o","host":"h","pid":1,"lease_secs":0,"state":"held"}"#[..],
            br#"{"owner":"o","host":"h","pid":1,"lease_secs":600,"state":"maybe"}"#,
            br#"{"owner":"o","host":"h","pid":99999999999,"lease_secs":600,"state":"held"}"#,
            br#"{"host":"h","pid":1,"lease_secs":600,"state":"held"}"#,
            b"not json",
        ] {
            assert!(
                Record::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
