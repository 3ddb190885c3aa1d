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
