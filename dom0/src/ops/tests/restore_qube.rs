//! restore-qube over the qvm-* stand-ins and the LVM fake: into a missing
//! qube (created from its record, template first), into an existing
//! halted qube (its LVs kept renamed), under a new name; running qubes
//! refused; every volume equals its bytes at the session restored; the
//! exact tool calls; hostile records refused before anything changes.

use super::harness::{volume_bytes, World, CHUNK};
use super::qubes::{add, send, three_qubes};
use super::qubes_world::Qubes;
use crate::chunk::sha256;
use crate::config::Config;
use crate::lvm::Lvm;
use crate::ops::restore_qube::{restore_qube, RestoreQubeOptions, RestoreQubeReport, Step};
use sparsebak_common::names::SessionName;

pub(super) fn restore(
    w: &World,
    q: &Qubes,
    o: RestoreQubeOptions,
) -> anyhow::Result<RestoreQubeReport> {
    restore_qube(&mut w.ctx(), &q.qvm, &w.ui, &o)
}

pub(super) fn named(names: &[&str]) -> RestoreQubeOptions {
    RestoreQubeOptions {
        qubes: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The settings sessions of `qube` (by its configured uuid).
fn settings_sessions(w: &World, id: &str) -> Vec<SessionName> {
    let v = sparsebak_common::names::VolName::new(&crate::qubes::archive_volume(id, "settings"))
        .unwrap();
    w.meta
        .chain(&v)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// Three qubes added and sent twice, with changes between; returns the
/// LVs' bytes at each send.
pub(super) struct Sent {
    pub(super) first: Vec<(String, Vec<u8>)>,
    pub(super) second: Vec<(String, Vec<u8>)>,
    pub(super) at_first: String,
}

fn lvs() -> [&'static str; 5] {
    [
        "vm-work-private",
        "vm-fedora-41-private",
        "vm-fedora-41-root",
        "vm-vault-private",
        "vm-vault-root",
    ]
}

pub(super) fn setup(w: &World) -> (Qubes, Sent) {
    let q = three_qubes(w);
    for n in ["fedora-41", "work", "vault"] {
        add(w, &q, n).unwrap();
    }
    q.run(&["qvm-prefs", "work", "netvm", "sys-firewall"]);
    q.run(&[
        "qvm-prefs",
        "work",
        "kernelopts",
        "$(touch /tmp/sparsebak-pwned) `id`; a|b",
    ]);
    q.run(&["qvm-features", "work", "service.cups", "1"]);
    q.run(&["qvm-tags", "work", "add", "project-x"]);
    q.run(&[
        "qvm-firewall",
        "work",
        "add",
        "action=accept",
        "dsthost=10.0.0.1",
    ]);
    q.run(&[
        "qvm-firewall",
        "work",
        "add",
        "action=drop",
        "comment=the rest",
    ]);
    q.run(&["qvm-firewall", "work", "del", "--rule-no", "0"]);
    send(w, &q, &[]).unwrap();
    let snap = || {
        lvs()
            .iter()
            .map(|l| (l.to_string(), w.lvm.contents(l)))
            .collect::<Vec<_>>()
    };
    let first = snap();
    // The newest of the three first records: a send of three qubes can
    // cross a second boundary, and a record is found at or before a time.
    let at_first = ["fedora-41", "work", "vault"]
        .iter()
        .map(|n| settings_sessions(w, &q.uuid(n))[0].clone())
        .max()
        .unwrap()
        .timestamp()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.lvm.write("vm-work-private", CHUNK + 3, b"second session");
    w.lvm.write("vm-fedora-41-root", 0, b"template update");
    w.lvm.write("vm-vault-root", 2 * CHUNK, &[9u8; 5000]);
    send(w, &q, &[]).unwrap();
    let second = snap();
    q.take_calls();
    (
        q,
        Sent {
            first,
            second,
            at_first,
        },
    )
}

pub(super) fn bytes_of<'a>(s: &'a [(String, Vec<u8>)], lv: &str) -> &'a [u8] {
    &s.iter().find(|(l, _)| l == lv).unwrap().1
}

pub(super) fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(sha256(got), sha256(want), "{what}");
}

#[test]
fn into_a_missing_qube_it_is_created_from_its_record_with_the_exact_calls() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let id = q.uuid("work");
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    w.lvm.remove("vg", "vm-work-private").unwrap();
    let o = RestoreQubeOptions {
        session: Some(sent.at_first.clone()),
        ..named(&["work"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let calls = q.take_calls();
    let changes: Vec<&String> = calls
        .iter()
        .filter(|c| !c.starts_with("qvm-ls") && !c.contains(" info ") && !c.contains("--raw"))
        .collect();
    assert_eq!(
        changes,
        [
            "qvm-create --class AppVM --label red --template fedora-41 work",
            "qvm-prefs work kernelopts '$(touch /tmp/sparsebak-pwned) `id`; a|b'",
            "qvm-prefs work netvm sys-firewall",
            "qvm-features work service.cups 1",
            "qvm-tags work add created-by-dom0 project-x",
            "qvm-firewall work add action=accept dsthost=10.0.0.1",
            "qvm-firewall work add action=drop 'comment=the rest'",
            "qvm-firewall work del --rule-no 0",
        ]
    );
    assert!(
        !std::path::Path::new("/tmp/sparsebak-pwned").exists(),
        "nothing was executed"
    );
    assert_eq!(
        q.get("work", "firewall"),
        "action=accept dsthost=10.0.0.1\naction=drop comment=the rest"
    );
    let got = w.lvm.written("vg", "vm-work-private");
    assert_same(
        &got,
        bytes_of(&sent.first, "vm-work-private"),
        "work private at the first session",
    );
    // The configuration follows the new qube (new uuid), under the old id.
    let c = Config::load(&w.meta.root).unwrap();
    assert_eq!(c.qubes[&id].uuid, q.uuid("work"));
    assert_ne!(q.uuid("work"), id);
    assert!(r.steps.iter().any(|s| matches!(s, Step::Bind { .. })));
}

#[test]
fn into_an_existing_halted_qube_the_replaced_lvs_are_kept_and_can_be_restored() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let o = RestoreQubeOptions {
        session: Some(sent.at_first.clone()),
        ..named(&["vault"])
    };
    let r = restore(&w, &q, o).unwrap();
    // Its settings are still those of its record: nothing to change.
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let calls = q.take_calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("qvm-create") || c.starts_with("qvm-prefs vault")),
        "{calls:?}"
    );
    assert!(calls.contains(&"qvm-check --running vault".to_string()));
    for lv in ["vm-vault-private", "vm-vault-root"] {
        assert_same(&w.lvm.written("vg", lv), bytes_of(&sent.first, lv), lv);
    }
    // The replaced LVs are still there, holding the second session's bytes.
    let kept: Vec<String> = w
        .lvm
        .survey("vg")
        .unwrap()
        .into_keys()
        .filter(|n| n.contains(".pre-restore-"))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for k in &kept {
        let lv = k.split(".pre-restore-").next().unwrap();
        assert_same(&w.lvm.contents(k), bytes_of(&sent.second, lv), k);
    }
    assert_eq!(r.undo.len(), 2);
    assert!(r.undo[0].contains("lvrename vg "), "{}", r.undo[0]);
    // Restoring the latest session brings the second state back.
    restore(&w, &q, named(&["vault"])).unwrap();
    assert_same(
        &w.lvm.written("vg", "vm-vault-root"),
        bytes_of(&sent.second, "vm-vault-root"),
        "latest",
    );
}

#[test]
fn as_a_new_name_and_template_first_when_it_is_missing_too() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let o = RestoreQubeOptions {
        as_name: Some("work-copy".into()),
        ..named(&["work"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert!(
        !r.steps.iter().any(|s| matches!(s, Step::Bind { .. })),
        "--as does not take over the archive volumes"
    );
    assert_same(
        &w.lvm.written("vg", "vm-work-copy-private"),
        bytes_of(&sent.second, "vm-work-private"),
        "copy",
    );
    assert_eq!(q.get("work-copy", "template"), "fedora-41");
    // Template and AppVM both gone: the template comes back first.
    for n in ["work", "fedora-41", "work-copy"] {
        std::fs::remove_dir_all(q.state.join("qubes").join(n)).unwrap();
    }
    let r = restore(&w, &q, named(&["work"])).unwrap();
    let created: Vec<&str> = r
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { qube, .. } => Some(qube.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(created, ["fedora-41", "work"]);
    assert_same(
        &w.lvm.written("vg", "vm-fedora-41-root"),
        bytes_of(&sent.second, "vm-fedora-41-root"),
        "template root",
    );
}

#[test]
fn a_running_qube_is_refused_unless_shutdown_and_dry_run_changes_nothing() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, _) = setup(&w);
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(
        e.contains("work is running")
            && e.contains("--shutdown")
            && e.contains("nothing was changed"),
        "{e}"
    );
    let before = w.lvm.survey("vg").unwrap();
    q.take_calls();
    let o = RestoreQubeOptions {
        dry_run: true,
        shutdown: true,
        ..named(&["work"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert!(
        r.dry_run && matches!(r.steps[0], Step::Shutdown { .. }),
        "{:?}",
        r.steps
    );
    assert_eq!(w.lvm.survey("vg").unwrap(), before);
    let calls = q.take_calls();
    let question = |c: &String| {
        c.starts_with("qvm-ls")
            || c.starts_with("qvm-check")
            || c.contains("--hide-default")
            || c.contains(" info ")
            || c.ends_with(" list")
            || c.split(' ').count() == 2
    };
    assert!(calls.iter().all(question), "{calls:?}");
    let o = RestoreQubeOptions {
        shutdown: true,
        ..named(&["work"])
    };
    restore(&w, &q, o).unwrap();
    assert!(q
        .take_calls()
        .contains(&"qvm-shutdown --wait --timeout 120 work".to_string()));
    assert_eq!(q.get("work", "state"), "Halted");
    // A shutdown that does not finish stops the restore before any write.
    q.set("work", "state", "Running");
    q.set("work", "shutdown-hangs", "1");
    let lvs_before = w.lvm.survey("vg").unwrap();
    let o = RestoreQubeOptions {
        shutdown: true,
        ..named(&["work"])
    };
    let e = format!("{:#}", restore(&w, &q, o).unwrap_err());
    assert!(e.contains("Failed to shut down"), "{e}");
    assert_eq!(w.lvm.survey("vg").unwrap(), lvs_before);
}

#[test]
fn all_restores_every_qube_templates_and_netvms_first() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    for n in ["work", "fedora-41", "vault"] {
        std::fs::remove_dir_all(q.state.join("qubes").join(n)).unwrap();
    }
    let o = RestoreQubeOptions {
        all: true,
        exclude: vec!["vault".into()],
        dry_run: true,
        ..Default::default()
    };
    let r = restore(&w, &q, o).unwrap();
    assert!(
        r.warnings.iter().any(|x| x.contains("vault left out")),
        "{:?}",
        r.warnings
    );
    assert!(!r.steps.iter().any(|s| s.to_string().contains("vault")));
    let o = RestoreQubeOptions {
        all: true,
        ..Default::default()
    };
    let r = restore(&w, &q, o).unwrap();
    let created: Vec<&str> = r
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { qube, .. } => Some(qube.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(created, ["fedora-41", "vault", "work"]);
    for lv in lvs() {
        assert_same(&w.lvm.written("vg", lv), bytes_of(&sent.second, lv), lv);
    }
}

/// Store `bytes` as the next session of `qube`'s settings record, as a
/// destination (or a dom0 bug) could hand back: consistent hashes, hostile
/// content.
pub(super) fn store_record(w: &World, id: &str, bytes: &[u8]) {
    let c = w.ctx();
    std::fs::write(crate::ops::qube_add::record_path(&c, id).unwrap(), bytes).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = crate::ops::send::SendOptions {
        volumes: vec![crate::qubes::archive_volume(id, "settings")],
        ..Default::default()
    };
    crate::ops::send::send(&c, &w.ui, &o).unwrap();
}

pub(super) fn record_of(w: &World, id: &str) -> crate::qubes::record::QubeRecord {
    let c = w.ctx();
    let p = crate::ops::qube_add::record_path(&c, id).unwrap();
    crate::qubes::record::QubeRecord::parse(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn hostile_records_are_refused_or_warned_about_and_nothing_is_created_half_way() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, _) = setup(&w);
    let id = q.uuid("work");
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    let good = record_of(&w, &id);
    let no_create = |q: &Qubes| {
        let calls = q.take_calls();
        assert!(
            !calls.iter().any(|c| c.starts_with("qvm-create")),
            "{calls:?}"
        );
    };
    // A newline in a value (it could not be passed as one argument).
    let mut v = serde_json::to_value(&good).unwrap();
    v["properties"][0][1] = "nopat\nrm -rf /".into();
    store_record(&w, &id, &serde_json::to_vec(&v).unwrap());
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(
        e.contains("control character") && e.contains("settings"),
        "{e}"
    );
    no_create(&q);
    // Oversized: refused before a chunk is fetched.
    let mut big = serde_json::to_vec(&good).unwrap();
    big.resize(300 * 1024, b' ');
    store_record(&w, &id, &big);
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(e.contains("more than 262144"), "{e}");
    no_create(&q);
    // Another qube's uuid inside the record.
    let mut other = good.clone();
    other.uuid = q.uuid("vault");
    other.volumes[0].archive = crate::qubes::archive_volume(&other.uuid, "private");
    store_record(&w, &id, &serde_json::to_vec(&other).unwrap());
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(e.contains("names uuid"), "{e}");
    no_create(&q);
    // A property naming a qube that does not exist: default, with a warning.
    let mut gone = good.clone();
    gone.properties.retain(|(k, _)| k != "netvm");
    gone.properties.push(("netvm".into(), "sys-vpn".into()));
    store_record(&w, &id, &gone.encode().unwrap());
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|x| x.contains("netvm names qube sys-vpn")),
        "{:?}",
        r.warnings
    );
    assert!(!q.take_calls().iter().any(|c| c.contains("netvm")));
    // Tampered on the destination: the hash check stops it.
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    let arch = w.path("archive");
    let vol_dir = walk_find(&arch, &crate::qubes::archive_volume(&id, "settings"));
    let chunk = newest_chunk(&vol_dir);
    let mut b = std::fs::read(&chunk).unwrap();
    let n = b.len() - 1;
    b[n] ^= 1;
    std::fs::write(&chunk, b).unwrap();
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(e.contains("cannot read settings record"), "{e}");
    no_create(&q);
}

fn walk_find(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    find_under(dir, name).unwrap_or_else(|| panic!("{name} not under {}", dir.display()))
}

fn find_under(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.file_name()? == name {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(r) = find_under(&p, name) {
                return Some(r);
            }
        }
    }
    None
}

/// A chunk file of the newest session under a volume dir.
fn newest_chunk(vol: &std::path::Path) -> std::path::PathBuf {
    let mut sessions: Vec<_> = std::fs::read_dir(vol)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("S_") && p.is_dir())
        .collect();
    sessions.sort();
    let s = sessions.pop().unwrap();
    for d in std::fs::read_dir(&s).unwrap() {
        let d = d.unwrap().path();
        if d.is_dir() {
            return std::fs::read_dir(d)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
        }
    }
    panic!("no chunk in {}", s.display())
}

#[test]
fn a_destination_that_lost_a_session_is_refused_before_anything_changes() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, _) = setup(&w);
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    let id = q.uuid("vault");
    let vol = walk_find(
        &w.path("archive"),
        &crate::qubes::archive_volume(&id, "root"),
    );
    let mut sessions: Vec<_> = std::fs::read_dir(&vol)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("S_"))
        .collect();
    sessions.sort();
    std::fs::remove_dir_all(sessions.pop().unwrap()).unwrap();
    let before = w.lvm.survey("vg").unwrap();
    let e = format!("{:#}", restore(&w, &q, named(&["vault"])).unwrap_err());
    assert!(
        e.contains("qube vault") && e.contains("Nothing was read"),
        "{e}"
    );
    assert_eq!(w.lvm.survey("vg").unwrap(), before);
    // work's volumes are intact: it can still be restored.
    restore(&w, &q, named(&["work"])).unwrap();
}

#[test]
fn a_pruned_data_session_restores_the_next_newer_one_and_says_so() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let id = q.uuid("vault");
    let data = crate::qubes::archive_volume(&id, "root");
    let first = {
        let v = sparsebak_common::names::VolName::new(&data).unwrap();
        w.meta.chain(&v).unwrap()[0].name.timestamp().to_string()
    };
    let o = crate::ops::prune::PruneOptions {
        volumes: vec![data],
        session: Some(first),
        ..Default::default()
    };
    crate::ops::prune::prune(&w.ctx(), &w.ui, &o).unwrap();
    let o = RestoreQubeOptions {
        session: Some(sent.at_first.clone()),
        ..named(&["vault"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|x| x.contains("root session") && x.contains("pruned")),
        "{:?}",
        r.warnings
    );
    assert_same(
        &w.lvm.written("vg", "vm-vault-root"),
        bytes_of(&sent.second, "vm-vault-root"),
        "next newer",
    );
    assert_same(
        &w.lvm.written("vg", "vm-vault-private"),
        bytes_of(&sent.first, "vm-vault-private"),
        "private as recorded",
    );
}
