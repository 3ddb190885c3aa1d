//! sparsebak.Restore over the real backend (`LocalBackend`): the archive
//! in the meta dir, the qvm-* stand-ins and the LVM fake. A request from
//! the archive's VM restores a halted qube whose data then equals the
//! session; a running qube, another VM and a busy meta dir are refused
//! with nothing changed.

use super::harness::{volume_bytes, World};
use super::qubes::{add, send, three_qubes};
use super::qubes_world::Qubes;
use crate::chunk::sha256;
use crate::config::Config;
use crate::dest::DestKind;
use crate::jobs::log::MemLog;
use crate::lvm::Lvm;
use crate::restore_service::backend::LocalBackend;
use crate::restore_service::{serve, Reply, EXIT_DONE, EXIT_REFUSED};

/// Three qubes added and sent once, the archive on VM sys-backup.
fn setup(w: &World) -> (Qubes, Vec<u8>) {
    let q = three_qubes(w);
    for n in ["fedora-41", "work", "vault"] {
        add(w, &q, n).unwrap();
    }
    send(w, &q, &[]).unwrap();
    let mut c = Config::load(&w.meta.root).unwrap();
    // Same place, reached through VM sys-backup (the in-process agent
    // serves it either way).
    c.dest.kind = DestKind::Qubes {
        vm: "sys-backup".into(),
    };
    c.save(&w.meta.root).unwrap();
    let sent = w.lvm.contents("vm-work-private");
    (q, sent)
}

fn ask(w: &World, q: &Qubes, caller: &str, arg: &str) -> Reply {
    let log = MemLog::default();
    serve(
        Some(caller),
        Some(arg),
        || {
            Ok(Box::new(LocalBackend::open(
                w.meta.clone(),
                &w.agent,
                &w.lvm,
                &q.qvm,
            )?))
        },
        &log,
    )
}

#[test]
fn the_backup_vm_restores_a_halted_qube_equal_to_its_session() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let r = ask(&w, &q, "sys-backup", "list");
    assert_eq!(r.exit, EXIT_DONE, "{}", r.text);
    let names: Vec<&str> = r
        .text
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["fedora-41", "vault", "work"]);
    // The qube is halted and its data has changed since the session.
    q.set("work", "state", "Halted");
    w.lvm
        .write("vm-work-private", 100, b"changed after the backup");
    assert_ne!(sha256(&w.lvm.contents("vm-work-private")), sha256(&sent));
    let r = ask(&w, &q, "sys-backup", "qube+work");
    assert_eq!(r.exit, EXIT_DONE, "{}", r.text);
    assert!(
        r.text.starts_with("ok: restored qube work from session "),
        "{}",
        r.text
    );
    assert_eq!(
        sha256(&w.lvm.written("vg", "vm-work-private")),
        sha256(&sent)
    );
}

#[test]
fn refusals_change_nothing() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, _) = setup(&w);
    q.set("work", "state", "Running");
    let before = w.lvm.survey("vg").unwrap();
    let r = ask(&w, &q, "sys-backup", "qube+work");
    assert_eq!(r.exit, EXIT_REFUSED, "{}", r.text);
    assert!(r.text.contains("qube work is running"), "{}", r.text);
    let r = ask(&w, &q, "work", "qube+vault");
    assert!(
        r.text.contains("VM work does not serve this archive"),
        "{}",
        r.text
    );
    let r = ask(
        &w,
        &q,
        "sys-backup",
        "qube+vault+20301231-000000+as+fedora-41",
    );
    assert!(r.text.contains("qube fedora-41 exists"), "{}", r.text);
    {
        let _held = w.meta.lock().unwrap();
        let r = ask(&w, &q, "sys-backup", "list");
        assert_eq!(r.exit, EXIT_REFUSED);
        assert!(
            r.text.contains("another sparsebak is running"),
            "{}",
            r.text
        );
    }
    assert_eq!(w.lvm.survey("vg").unwrap(), before);
}
