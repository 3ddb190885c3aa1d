//! Qubes by name: `add --qube` maps a qube to its volumes with Qubes'
//! tools (stand-ins recording every call), `send` follows the qube by uuid,
//! refuses what cannot be read consistently, and stores a settings record
//! naming the data sessions it goes with.

use super::harness::{volume_bytes, World};
use super::qubes_world::Qubes;
use crate::chunk::sha256;
use crate::config::Config;
use crate::lvm::Lvm;
use crate::ops::qube_add::{add_qube, AddQubeOptions};
use crate::ops::qube_send;
use crate::ops::send::SendOptions;
use crate::qubes::record::QubeRecord;
use sparsebak_common::names::VolName;

pub fn add(w: &World, q: &Qubes, name: &str) -> anyhow::Result<crate::ops::qube_add::AddedQube> {
    add_qube(&mut w.ctx(), &q.qvm, &AddQubeOptions { qube: name.into() })
}

pub fn send(w: &World, q: &Qubes, names: &[&str]) -> anyhow::Result<()> {
    let o = SendOptions {
        volumes: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    qube_send::send(&mut w.ctx(), &q.qvm, &w.ui, &o)
}

/// Three qubes: template `fedora-41` (root + private), AppVM `work` on it
/// (running), standalone `vault`; plus `sys-firewall` and a disposable.
pub fn three_qubes(w: &World) -> Qubes {
    let q = Qubes::new(w);
    q.make(
        w,
        "fedora-41",
        "TemplateVM",
        "Halted",
        "",
        &[volume_bytes(4, 10), volume_bytes(8, 11)],
    );
    q.make(
        w,
        "work",
        "AppVM",
        "Running",
        "fedora-41",
        &[volume_bytes(6, 12)],
    );
    q.make(
        w,
        "vault",
        "StandaloneVM",
        "Halted",
        "",
        &[volume_bytes(3, 13), volume_bytes(5, 14)],
    );
    q.make(
        w,
        "sys-firewall",
        "AppVM",
        "Running",
        "fedora-41",
        &[volume_bytes(1, 15)],
    );
    q.make(w, "disp1", "DispVM", "Running", "fedora-41", &[]);
    q.take_calls();
    q
}

fn vol(id: &str, part: &str) -> VolName {
    VolName::new(&crate::qubes::archive_volume(id, part)).unwrap()
}

#[test]
fn add_maps_each_class_to_its_volumes_with_the_exact_tool_calls() {
    let w = World::thin(volume_bytes(1, 1));
    let q = three_qubes(&w);
    let a = add(&w, &q, "work").unwrap();
    assert_eq!(
        q.take_calls(),
        [
            "qvm-ls --raw-data --fields NAME,CLASS,STATE,UUID,TEMPLATE",
            "qvm-volume info work:private",
            "qvm-pool info vm-pool",
        ]
    );
    assert_eq!(a.id, q.uuid("work"));
    assert_eq!(a.volumes.len(), 1);
    assert_eq!(
        (a.volumes[0].1.clone(), a.volumes[0].2.as_str()),
        (vol(&a.id, "private"), "vm-work-private")
    );
    let t = add(&w, &q, "fedora-41").unwrap();
    let parts: Vec<&str> = t.volumes.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(parts, ["private", "root"]);
    let d = add(&w, &q, "disp1").unwrap();
    assert!(d.skipped.unwrap().contains("disposable"));
    let e = add(&w, &q, "work").unwrap_err().to_string();
    assert!(e.contains("already in the configuration"), "{e}");
    let e = add(&w, &q, "nosuch").unwrap_err().to_string();
    assert!(e.contains("no qube named nosuch"), "{e}");
    let c = Config::load(&w.meta.root).unwrap();
    assert_eq!(c.qubes.len(), 2);
    assert_eq!(
        c.volumes[&vol(&a.id, "private")].lv.as_deref(),
        Some("vm-work-private")
    );
}

#[test]
fn refused_qubes_say_why_and_nothing_is_added() {
    let w = World::thin(volume_bytes(1, 1));
    let q = three_qubes(&w);
    q.fixture_pool("reflink", "file-reflink");
    q.set("work", "volumes/private/pool", "reflink");
    let e = format!("{:#}", add(&w, &q, "work").unwrap_err());
    assert!(
        e.contains("file-reflink") && e.contains("work:private"),
        "{e}"
    );
    q.fixture_pool_lvm("other", "vg", "pool2");
    q.set("work", "volumes/private/pool", "other");
    let e = format!("{:#}", add(&w, &q, "work").unwrap_err());
    assert!(e.contains("vg/pool2") && e.contains("arch-init"), "{e}");
    q.set("work", "volumes/private/pool", "vm-pool");
    q.set("work", "volumes/private/revisions_to_keep", "-1");
    let e = format!("{:#}", add(&w, &q, "work").unwrap_err());
    assert!(
        e.contains("snapshots disabled") && e.contains("qvm-shutdown --wait work"),
        "{e}"
    );
    assert!(Config::load(&w.meta.root).unwrap().qubes.is_empty());
    // Halted, the same qube is fine: nothing writes the LV.
    q.set("work", "state", "Halted");
    add(&w, &q, "work").unwrap();
}

#[test]
fn send_stores_data_then_a_settings_record_naming_its_sessions() {
    let w = World::thin(volume_bytes(1, 1));
    let q = three_qubes(&w);
    for n in ["work", "fedora-41", "vault"] {
        add(&w, &q, n).unwrap();
    }
    q.run(&["qvm-prefs", "work", "netvm", "sys-firewall"]);
    q.run(&["qvm-features", "work", "service.cups", "1"]);
    q.run(&["qvm-tags", "work", "add", "project-x"]);
    q.run(&[
        "qvm-firewall",
        "work",
        "add",
        "action=accept",
        "dsthost=10.0.0.1",
        "proto=tcp",
        "dstports=443-443",
    ]);
    send(&w, &q, &[]).unwrap();
    let id = q.uuid("work");
    let c = w.ctx();
    let rec_vol = vol(&id, "settings");
    let chain = w.meta.chain(&rec_vol).unwrap();
    assert_eq!(chain.len(), 1);
    let out = w.path("rec");
    crate::ops::receive::receive(
        &c,
        &w.ui,
        &crate::ops::receive::ReceiveOptions {
            volume: rec_vol.to_string(),
            save_to: Some(out.clone()),
            session: None,
            ..Default::default()
        },
    )
    .unwrap();
    let r = QubeRecord::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        (r.name.as_str(), r.class.as_str(), r.template.as_deref()),
        ("work", "AppVM", Some("fedora-41"))
    );
    assert_eq!(r.property("netvm"), Some("sys-firewall"));
    assert!(r.property("name").is_none() && r.property("uuid").is_none());
    assert_eq!(r.features, [("service.cups".to_string(), "1".to_string())]);
    assert!(r.tags.contains(&"project-x".to_string()));
    assert_eq!(
        r.firewall.last().unwrap(),
        "action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443"
    );
    let data = w.meta.chain(&vol(&id, "private")).unwrap();
    assert_eq!(r.volumes[0].session, data.last().unwrap().name.to_string());
    // The data restores to the LV's bytes.
    let got = w.path("work-private");
    crate::ops::receive::receive(
        &c,
        &w.ui,
        &crate::ops::receive::ReceiveOptions {
            volume: vol(&id, "private").to_string(),
            save_to: Some(got.clone()),
            session: None,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        sha256(&std::fs::read(got).unwrap()),
        sha256(&w.lvm.contents("vm-work-private"))
    );
    for n in ["fedora-41", "vault"] {
        let v = w.meta.chain(&vol(&q.uuid(n), "root")).unwrap();
        assert_eq!(v.len(), 1, "{n}");
    }
    // list: each qube volume row names its qube; `list work` its sessions.
    use crate::ops::list::{list, ListOptions, Listing};
    let Listing::Volumes { rows, .. } = list(&c, &ListOptions::default()).unwrap() else {
        panic!("volumes listing")
    };
    let row = rows
        .iter()
        .find(|r| r["volume"] == vol(&id, "private").as_str())
        .unwrap();
    assert_eq!(
        (row["qube"].as_str(), row["qube_volume"].as_str()),
        (Some("work"), Some("private"))
    );
    let o = ListOptions {
        volume: Some("work".into()),
    };
    let Listing::Qube { chain, .. } = list(&c, &o).unwrap() else {
        panic!("qube listing")
    };
    assert_eq!(chain.len(), 1);
}

#[test]
fn a_renamed_qube_keeps_its_archive_volumes_and_a_refused_one_does_not_stop_the_others() {
    let w = World::thin(volume_bytes(1, 1));
    let q = three_qubes(&w);
    add(&w, &q, "work").unwrap();
    add(&w, &q, "vault").unwrap();
    send(&w, &q, &[]).unwrap();
    let id = q.uuid("work");
    // Renamed (as Qubes does it, the LV follows the name; the uuid stays).
    std::fs::rename(q.state.join("qubes/work"), q.state.join("qubes/office")).unwrap();
    q.set("office", "volumes/private/vid", "vg/vm-office-private");
    w.lvm
        .rename("vg", "vm-work-private", "vm-office-private")
        .unwrap();
    w.lvm.write("vm-office-private", 100, b"after the rename");
    send(&w, &q, &["office"]).unwrap();
    let c = Config::load(&w.meta.root).unwrap();
    assert_eq!(c.qubes[&id].name, "office");
    assert_eq!(
        c.volumes[&vol(&id, "private")].lv.as_deref(),
        Some("vm-office-private")
    );
    let chain = w.meta.chain(&vol(&id, "private")).unwrap();
    assert_eq!(chain.len(), 2, "the rename continued the chain");
    assert_eq!(w.last_sent().changed_chunks, 1);
    // Snapshots disabled while it runs: refused, vault is still sent.
    q.set("office", "volumes/private/revisions_to_keep", "-1");
    w.lvm.write("vm-vault-private", 0, b"vault changed");
    let e = format!("{:#}", send(&w, &q, &[]).unwrap_err());
    assert!(e.contains("qubes not sent: office"), "{e}");
    let vault = w.meta.chain(&vol(&q.uuid("vault"), "private")).unwrap();
    assert_eq!(vault.len(), 2);
    let settings = w.meta.chain(&vol(&id, "settings")).unwrap();
    assert_eq!(settings.len(), 2, "no record for the refused send");
}

#[test]
fn a_qube_whose_volume_was_deleted_is_not_sent_until_added_again() {
    let w = World::thin(volume_bytes(1, 1));
    let q = three_qubes(&w);
    add(&w, &q, "vault").unwrap();
    send(&w, &q, &[]).unwrap();
    let id = q.uuid("vault");
    let del = |part: &str| {
        let o = crate::ops::delete::DeleteOptions {
            volume: crate::qubes::archive_volume(&id, part),
        };
        crate::ops::delete::delete(&mut w.ctx(), &w.ui, &o).unwrap();
    };
    del("root");
    send(&w, &q, &[]).unwrap();
    let c = Config::load(&w.meta.root).unwrap();
    assert!(
        !c.volumes.contains_key(&vol(&id, "root")),
        "the deleted volume is not added back by send"
    );
    assert!(add(&w, &q, "vault")
        .unwrap_err()
        .to_string()
        .contains("already in the configuration"));
    del("private");
    del("settings");
    let a = add(&w, &q, "vault").unwrap();
    assert_eq!(a.volumes.len(), 2);
    send(&w, &q, &["vault"]).unwrap();
    assert_eq!(
        w.meta.chain(&vol(&id, "root")).unwrap().len(),
        1,
        "a new chain"
    );
}
