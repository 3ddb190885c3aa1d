//! Device assignments: read from qubes.xml at send (the stand-ins keep it
//! as qubesd does), stored in the settings record, re-created on restore
//! with the `qvm-device` form of the installed Qubes (R4.2 `attach
//! --persistent`, R4.3 `assign`), exact commands asserted; a missing
//! backend qube is a warning; hostile assignments in a record are refused
//! before anything changes.

use super::harness::{volume_bytes, World};
use super::qubes::{add, send, three_qubes};
use super::qubes_world::Qubes;
use super::restore_qube::{named, record_of, restore, store_record};
use crate::lvm::Lvm;
use crate::ops::restore_qube::{RestoreQubeOptions, Step};
use crate::qubes::record::DeviceAssignment;

/// `work` with a PCI device from dom0 and a block device from `sys-usb`,
/// added and sent; `sys-usb` exists but is not backed up.
fn with_devices(w: &World) -> Qubes {
    let q = three_qubes(w);
    q.fixture(&["sys-usb", "AppVM", "Running", "fedora-41"]);
    for n in ["fedora-41", "work"] {
        add(w, &q, n).unwrap();
    }
    q.run(&[
        "qvm-device",
        "pci",
        "attach",
        "--persistent",
        "-o",
        "no-strict-reset=True",
        "work",
        "dom0:00_14.0",
    ]);
    q.run(&[
        "qvm-device",
        "block",
        "attach",
        "--persistent",
        "work",
        "sys-usb:sda",
    ]);
    send(w, &q, &[]).unwrap();
    q.take_calls();
    q
}

fn device_calls(q: &Qubes) -> Vec<String> {
    q.take_calls()
        .into_iter()
        .filter(|c| c.starts_with("qvm-device"))
        .collect()
}

#[test]
fn assignments_are_recorded_from_qubes_xml_and_re_created_on_r42() {
    let w = World::thin(volume_bytes(1, 1));
    let q = with_devices(&w);
    let id = q.uuid("work");
    let r = record_of(&w, &id);
    assert_eq!(
        r.devices,
        [
            DeviceAssignment {
                class: "block".into(),
                device: "sys-usb:sda".into(),
                identity: None,
                mode: "required".into(),
                options: vec![],
            },
            DeviceAssignment {
                class: "pci".into(),
                device: "dom0:00_14.0".into(),
                identity: None,
                mode: "required".into(),
                options: vec![("no-strict-reset".into(), "True".into())],
            },
        ]
    );
    // work and its block backend are gone: the PCI device comes back, the
    // block device is left out with a warning; --dry-run shows it first.
    for n in ["work", "sys-usb"] {
        std::fs::remove_dir_all(q.state.join("qubes").join(n)).unwrap();
    }
    w.lvm.remove("vg", "vm-work-private").unwrap();
    let dry = RestoreQubeOptions {
        dry_run: true,
        ..named(&["work"])
    };
    let plan = restore(&w, &q, dry).unwrap();
    let shown: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
    let want = "qvm-device pci attach --persistent -o no-strict-reset=True work dom0:00_14.0";
    assert!(
        shown.contains(&format!("assign a device to work: {want}")),
        "{shown:?}"
    );
    assert_eq!(device_calls(&q), ["qvm-device --version"]);
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|x| x.contains("block device sys-usb:sda") && x.contains("sys-usb does not exist")),
        "{:?}",
        r.warnings
    );
    assert_eq!(device_calls(&q), ["qvm-device --version", want]);
    assert_eq!(
        q.get("work", "devices"),
        "pci\tdom0\t00_14.0\t\trequired\tno-strict-reset=True"
    );
}

#[test]
fn on_r43_they_are_assigned_with_their_mode_and_identity() {
    let w = World::thin(volume_bytes(1, 1));
    let q = with_devices(&w);
    let id = q.uuid("work");
    // The same qube as R4.3 records it: identity and mode in qubes.xml.
    std::fs::write(q.state.join("qubes-version"), "4.3.4\n").unwrap();
    q.set(
        "work",
        "devices",
        "pci\tdom0\t00_14.0\t*\trequired\tno-strict-reset=True\n\
         usb\tsys-usb\t2-1\t0x0781:0x5581::u080650\task-to-attach\t",
    );
    q.write_qubes_xml();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    send(&w, &q, &["work"]).unwrap();
    assert_eq!(record_of(&w, &id).devices[1].mode, "ask-to-attach");
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    w.lvm.remove("vg", "vm-work-private").unwrap();
    q.take_calls();
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        device_calls(&q),
        [
            "qvm-device --version",
            "qvm-device pci assign --required -o no-strict-reset=True work 'dom0:00_14.0:*'",
            "qvm-device usb assign --ask work sys-usb:2-1:0x0781:0x5581::u080650",
        ]
    );
    // A record of R4.3 restored on R4.2: what R4.2 cannot express is a
    // warning, the rest is assigned.
    std::fs::write(q.state.join("qubes-version"), "4.2.7\n").unwrap();
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    q.take_calls();
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|x| x.contains("usb device sys-usb:2-1") && x.contains("ask-to-attach")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        device_calls(&q),
        [
            "qvm-device --version",
            "qvm-device pci attach --persistent -o no-strict-reset=True work dom0:00_14.0",
        ]
    );
    assert!(r.steps.iter().any(|s| matches!(s, Step::Device { .. })));
}

#[test]
fn hostile_assignments_in_a_record_are_refused_before_anything_changes() {
    let w = World::thin(volume_bytes(1, 1));
    let q = with_devices(&w);
    let id = q.uuid("work");
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    let good = serde_json::to_value(record_of(&w, &id)).unwrap();
    let cases: [(&str, serde_json::Value, &str); 5] = [
        ("class", "pci;id".into(), "device class"),
        ("device", "dom0:00_14.0 -o x".into(), "port"),
        (
            "options",
            serde_json::json!([["no-strict-reset", "$(touch /tmp/sparsebak-pwned)"]]),
            "option",
        ),
        ("identity", "x".repeat(300).into(), "identity"),
        ("mode", "always".into(), "mode"),
    ];
    for (field, value, says) in cases {
        let mut v = good.clone();
        v["devices"][1][field] = value;
        store_record(&w, &id, &serde_json::to_vec(&v).unwrap());
        let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
        assert!(
            e.contains(says) && e.contains("settings record"),
            "{field}: {e}"
        );
        let calls = q.take_calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("qvm-create") || c.starts_with("qvm-device")),
            "{calls:?}"
        );
    }
    let mut v = good.clone();
    let many: Vec<serde_json::Value> = (0..300).map(|_| good["devices"][1].clone()).collect();
    v["devices"] = many.into();
    store_record(&w, &id, &serde_json::to_vec(&v).unwrap());
    let e = format!("{:#}", restore(&w, &q, named(&["work"])).unwrap_err());
    assert!(e.contains("300 devices"), "{e}");
    assert!(!std::path::Path::new("/tmp/sparsebak-pwned").exists());
}

/// Into an existing (halted) qube on R4.2, its assignments are made the
/// record's: one the record does not have is detached (the step says how
/// to make it again), one in another form (its options changed) detached
/// and at once attached as recorded, a missing one attached; --dry-run shows every
/// command and runs none; a second restore has nothing left to do.
#[test]
fn an_existing_qubes_assignments_are_made_the_records_on_r42() {
    let w = World::thin(volume_bytes(1, 1));
    let q = with_devices(&w);
    let recorded = q.get("work", "devices");
    // Changed since, halted (Qubes removes a persistent assignment only
    // from a halted qube).
    q.set("work", "state", "Halted");
    q.run(&["qvm-device", "pci", "detach", "work", "dom0:00_14.0"]);
    q.run(&["qvm-device", "block", "detach", "work", "sys-usb:sda"]);
    q.run(&[
        "qvm-device",
        "pci",
        "attach",
        "--persistent",
        "work",
        "dom0:00_14.0",
    ]);
    q.run(&[
        "qvm-device",
        "pci",
        "attach",
        "--persistent",
        "work",
        "dom0:00_1f.0",
    ]);
    let dry = RestoreQubeOptions {
        dry_run: true,
        ..named(&["work"])
    };
    let plan = restore(&w, &q, dry).unwrap();
    let shown: Vec<String> = plan
        .steps
        .iter()
        .map(|s| s.to_string())
        .filter(|s| s.contains("device"))
        .collect();
    assert_eq!(
        shown,
        [
            "remove a device assignment from work: qvm-device pci detach work dom0:00_1f.0 \
             (to make it again: qvm-device pci attach --persistent work dom0:00_1f.0)",
            "assign a device to work: qvm-device block attach --persistent work sys-usb:sda",
            "remove a device assignment from work: qvm-device pci detach work dom0:00_14.0 \
             (to make it again: qvm-device pci attach --persistent work dom0:00_14.0)",
            "assign a device to work: qvm-device pci attach --persistent -o \
             no-strict-reset=True work dom0:00_14.0",
        ]
    );
    assert_eq!(device_calls(&q), ["qvm-device --version"], "dry run");
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        device_calls(&q),
        [
            "qvm-device --version",
            "qvm-device pci detach work dom0:00_1f.0",
            "qvm-device block attach --persistent work sys-usb:sda",
            "qvm-device pci detach work dom0:00_14.0",
            "qvm-device pci attach --persistent -o no-strict-reset=True work dom0:00_14.0",
        ]
    );
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(|l| l.trim_end().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(q.get("work", "devices")), sorted(recorded));
    restore(&w, &q, named(&["work"])).unwrap();
    assert_eq!(device_calls(&q), Vec::<String>::new(), "nothing left to do");
}

/// On R4.3 the same with `unassign` and the assignment's identity; a
/// recorded form this Qubes cannot make leaves the current assignment as
/// it is, with a warning; a removal qvm-device refuses is a warning and
/// the restore goes on.
#[test]
fn on_r43_an_existing_qubes_assignments_are_unassigned_and_reassigned() {
    let w = World::thin(volume_bytes(1, 1));
    let q = with_devices(&w);
    std::fs::write(q.state.join("qubes-version"), "4.3.4\n").unwrap();
    q.set(
        "work",
        "devices",
        "usb\tsys-usb\t2-1\t0x0781:0x5581::u080650\task-to-attach\t",
    );
    q.write_qubes_xml();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    send(&w, &q, &["work"]).unwrap();
    // Since: the USB stick auto-attached instead, a PCI device assigned.
    q.set(
        "work",
        "devices",
        "usb\tsys-usb\t2-1\t0x0781:0x5581::u080650\tauto-attach\t\n\
         pci\tdom0\t00_1f.0\t*\trequired\t",
    );
    q.write_qubes_xml();
    q.set("work", "state", "Halted");
    q.take_calls();
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        device_calls(&q),
        [
            "qvm-device --version",
            "qvm-device pci unassign work 'dom0:00_1f.0:*'",
            "qvm-device usb unassign work sys-usb:2-1:0x0781:0x5581::u080650",
            "qvm-device usb assign --ask work sys-usb:2-1:0x0781:0x5581::u080650",
        ]
    );
    assert_eq!(
        q.get("work", "devices"),
        "usb\tsys-usb\t2-1\t0x0781:0x5581::u080650\task-to-attach"
    );

    // The same record on R4.2, which cannot assign ask-to-attach: the
    // current (required) assignment of that port is left, with a warning;
    // one the record lacks is still removed.
    std::fs::write(q.state.join("qubes-version"), "4.2.7\n").unwrap();
    q.set(
        "work",
        "devices",
        "usb\tsys-usb\t2-1\t\trequired\t\npci\tdom0\t00_1f.0\t\trequired\t",
    );
    q.write_qubes_xml();
    q.take_calls();
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|x| x.contains("usb device sys-usb:2-1")
                && x.contains("otherwise than recorded")
                && x.contains("ask-to-attach")
                && x.contains("left as it is")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        device_calls(&q),
        [
            "qvm-device --version",
            "qvm-device pci detach work dom0:00_1f.0"
        ]
    );
    assert_eq!(q.get("work", "devices"), "usb\tsys-usb\t2-1\t\trequired");

    // qubes.xml names an assignment qvm-device no longer has: its refusal
    // is a warning, and the data is still restored.
    q.set(
        "work",
        "devices",
        "usb\tsys-usb\t2-1\t\trequired\t\npci\tdom0\t00_19.0\t\trequired\t",
    );
    q.write_qubes_xml();
    q.set("work", "devices", "usb\tsys-usb\t2-1\t\trequired\t");
    q.take_calls();
    let r = restore(&w, &q, named(&["work"])).unwrap();
    assert!(
        r.warnings.iter().any(
            |x| x.contains("qvm-device pci detach work dom0:00_19.0 failed")
                && x.contains("not attached")
                && x.contains("remove that assignment by hand")
        ),
        "{:?}",
        r.warnings
    );
    assert!(r.steps.iter().any(|s| matches!(s, Step::Write { .. })));
}
