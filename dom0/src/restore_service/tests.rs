//! The service against hostile requests, over a fake backend: every
//! refusal happens before anything is restored, and every request is logged.

use super::*;
use crate::jobs::log::MemLog;
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Fake {
    vm: Option<String>,
    holdings: Vec<Holding>,
    existing: Vec<String>,
    running: Vec<String>,
    restored: Rc<RefCell<Vec<String>>>,
}

impl RestoreBackend for Fake {
    fn archive_vm(&self) -> Option<String> {
        self.vm.clone()
    }
    fn holdings(&mut self) -> Result<Vec<Holding>> {
        Ok(self.holdings.clone())
    }
    fn exists(&mut self, q: &str) -> Result<bool> {
        Ok(self.existing.iter().any(|e| e == q))
    }
    fn running(&mut self, q: &str) -> Result<bool> {
        Ok(self.running.iter().any(|e| e == q))
    }
    fn restore_qube(
        &mut self,
        q: &str,
        s: Option<&SessionName>,
        a: Option<&str>,
    ) -> Result<String> {
        let line = format!("{q} {:?} {a:?}", s.map(|s| s.timestamp()));
        self.restored.borrow_mut().push(line.clone());
        Ok(format!("restored {line}"))
    }
}

fn ses(ts: &str) -> SessionName {
    SessionName::from_timestamp(ts).unwrap()
}

fn fake() -> Fake {
    Fake {
        vm: Some("sys-backup".into()),
        holdings: vec![
            Holding {
                qube: "work".into(),
                sessions: vec![ses("20261201-000000"), ses("20261202-000000")],
            },
            Holding {
                qube: "vault".into(),
                sessions: vec![ses("20261202-000000")],
            },
            Holding {
                qube: "sys-backup".into(),
                sessions: vec![ses("20261202-000000")],
            },
        ],
        existing: vec![
            "work".into(),
            "vault".into(),
            "sys-backup".into(),
            "personal".into(),
        ],
        running: vec!["vault".into(), "sys-backup".into()],
        ..Default::default()
    }
}

/// Serve `arg` from `caller` over `f`; the reply, what was restored, the log.
fn ask(caller: Option<&str>, arg: &str, f: Fake) -> (Reply, Vec<String>, Vec<String>) {
    let restored = f.restored.clone();
    let log = MemLog::default();
    let r = serve(caller, Some(arg), || Ok(Box::new(f)), &log);
    let lines = log.0.lock().unwrap().clone();
    let done = restored.borrow().clone();
    (r, done, lines)
}

#[test]
fn a_valid_request_from_the_archive_vm_restores_and_is_logged() {
    let (r, done, log) = ask(Some("sys-backup"), "qube+work+20261201-120000", fake());
    assert_eq!(r.exit, EXIT_DONE, "{}", r.text);
    assert_eq!(done, [r#"work Some("20261201-120000") None"#]);
    assert!(r.text.starts_with("ok: restored work"), "{}", r.text);
    assert_eq!(log.len(), 2);
    assert!(log[1].starts_with(r#"info: restore request from VM "sys-backup": "qube+work+20261201-120000": ok: restored"#), "{log:?}");
    // Under a new name nobody has.
    let (r, done, _) = ask(
        Some("sys-backup"),
        "qube+work+20261202-000000+as+work-old",
        fake(),
    );
    assert_eq!(r.exit, EXIT_DONE, "{}", r.text);
    assert_eq!(done, [r#"work Some("20261202-000000") Some("work-old")"#]);
}

#[test]
fn list_names_what_the_vm_may_restore_but_not_itself() {
    let (r, done, _) = ask(Some("sys-backup"), "list", fake());
    assert_eq!(r.exit, EXIT_DONE);
    assert!(done.is_empty());
    assert_eq!(
        r.text.lines().skip(1).collect::<Vec<_>>(),
        [
            "work 20261201-000000 20261202-000000",
            "vault 20261202-000000"
        ]
    );
}

#[test]
fn hostile_requests_are_refused_before_anything_is_restored() {
    for (caller, arg, says) in [
        (
            Some("work"),
            "qube+vault",
            "VM work does not serve this archive (its destination is VM sys-backup)",
        ),
        (Some("dom0"), "list", "not from dom0"),
        (None, "list", "QREXEC_REMOTE_DOMAIN"),
        (
            Some("sys-backup"),
            "qube+personal",
            "the archive holds no qube personal",
        ),
        (
            Some("sys-backup"),
            "qube+vault",
            "qube vault is running: shut it down first",
        ),
        (Some("sys-backup"), "qube+dom0", "dom0 is never restored"),
        (
            Some("sys-backup"),
            "qube+sys-backup",
            "cannot restore itself",
        ),
        (
            Some("sys-backup"),
            "qube+work+20261201-000000+as+sys-backup",
            "cannot restore itself",
        ),
        (
            Some("sys-backup"),
            "qube+work+20261202-000000+as+personal",
            "qube personal exists",
        ),
        (
            Some("sys-backup"),
            "qube+work+20261130-000000",
            "no session of work at or before 20261130-000000",
        ),
        (
            Some("sys-backup"),
            "qube+work;reboot",
            "outside [A-Za-z0-9_.+-]",
        ),
        (
            Some("sys-backup"),
            &"a".repeat(5000),
            "longer than 100 bytes",
        ),
        (Some("sys-backup"), "restore+work", "malformed request"),
    ] {
        let (r, done, log) = ask(caller, arg, fake());
        assert_eq!(r.exit, EXIT_REFUSED, "{arg}: {}", r.text);
        assert!(
            r.text.starts_with("refused: ") && r.text.contains(says),
            "{arg}: {}",
            r.text
        );
        assert!(done.is_empty(), "{arg}");
        assert!(
            log.last()
                .unwrap()
                .starts_with("err: restore request from VM"),
            "{log:?}"
        );
    }
    // An archive that is not on a VM.
    let f = Fake { vm: None, ..fake() };
    let (r, _, _) = ask(Some("sys-backup"), "list", f);
    assert!(r.text.contains("not a Qubes VM"), "{}", r.text);
}

#[test]
fn a_request_while_another_sparsebak_runs_is_refused() {
    let log = MemLog::default();
    let r = serve(
        Some("sys-backup"),
        Some("qube+work"),
        || {
            Err(anyhow::anyhow!(
                "another sparsebak is running: ask again later"
            ))
        },
        &log,
    );
    assert_eq!(r.exit, EXIT_REFUSED);
    assert_eq!(
        r.text,
        "refused: another sparsebak is running: ask again later"
    );
    // A malformed request is refused without even taking the lock.
    let r = serve(Some("sys-backup"), Some("x"), || panic!("opened"), &log);
    assert_eq!(r.exit, EXIT_REFUSED);
}
