//! restore-qube into a qube that exists: its settings are made the
//! record's (every change a step, exact commands asserted; a device
//! assignment the record does not have removed), or kept with --data-only;
//! --dry-run changes nothing; a class that differs is refused.

use super::harness::{volume_bytes, World};
use super::restore_qube::{assert_same, bytes_of, named, restore, setup};
use crate::lvm::Lvm;
use crate::ops::restore_qube::RestoreQubeOptions;

/// Everything but the read-only questions the plan asks.
fn changes(q: &super::qubes_world::Qubes) -> Vec<String> {
    q.take_calls()
        .into_iter()
        .filter(|c| {
            !c.starts_with("qvm-ls")
                && !c.starts_with("qvm-check")
                && !c.contains(" info ")
                && !c.contains("--hide-default")
                && !c.contains(" list")
                && !c.contains("--version")
                && c.split(' ').count() > 2
        })
        .collect()
}

/// `work` changed in every kind of setting since its first send, then
/// halted.
fn change_work(q: &super::qubes_world::Qubes) {
    for argv in [
        &["qvm-prefs", "work", "netvm", "none"][..],
        &["qvm-prefs", "work", "memory", "4000"],
        &["qvm-prefs", "work", "label", "blue"],
        &["qvm-features", "work", "service.cups", ""],
        &["qvm-features", "work", "service.extra", "1"],
        &["qvm-tags", "work", "del", "project-x"],
        &["qvm-tags", "work", "add", "later"],
        &[
            "qvm-firewall",
            "work",
            "add",
            "action=accept",
            "dsthost=10.9.9.9",
        ],
        &[
            "qvm-device",
            "pci",
            "attach",
            "--persistent",
            "work",
            "dom0:00_1f.0",
        ],
    ] {
        q.run(argv);
    }
    q.set("work", "state", "Halted");
}

#[test]
fn an_existing_qubes_settings_are_made_the_records_with_each_change_shown() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    let prefs_then = q.get("work", "prefs");
    let tags_then = q.get("work", "tags");
    change_work(&q);
    let dry = RestoreQubeOptions {
        dry_run: true,
        session: Some(sent.at_first.clone()),
        ..named(&["work"])
    };
    let plan = restore(&w, &q, dry).unwrap();
    let shown: Vec<String> = plan.steps.iter().map(|s| s.to_string()).collect();
    assert!(
        shown.contains(&"reset work property memory to its default".to_string())
            && shown.contains(&"unset work feature service.extra".to_string())
            && shown.contains(
                &"remove a device assignment from work: qvm-device pci detach work dom0:00_1f.0 \
                  (to make it again: qvm-device pci attach --persistent work dom0:00_1f.0)"
                    .to_string()
            ),
        "{shown:?}"
    );
    assert_eq!(
        changes(&q),
        Vec::<String>::new(),
        "a dry run changes nothing"
    );
    let o = RestoreQubeOptions {
        session: Some(sent.at_first.clone()),
        ..named(&["work"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert_eq!(
        changes(&q),
        [
            "qvm-prefs work label red",
            "qvm-prefs work netvm sys-firewall",
            "qvm-prefs --default work memory",
            "qvm-features work service.cups 1",
            "qvm-features --default work service.extra",
            "qvm-tags work add project-x",
            "qvm-tags work del later",
            "qvm-firewall work add action=accept dsthost=10.0.0.1",
            "qvm-firewall work add action=drop 'comment=the rest'",
            "qvm-firewall work del --rule-no 0",
            "qvm-firewall work del --rule-no 0",
            "qvm-firewall work del --rule-no 0",
            "qvm-device pci detach work dom0:00_1f.0",
        ]
    );
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(
        q.get("work", "devices"),
        "",
        "no assignment the record lacks"
    );
    assert_eq!(q.get("work", "prefs"), prefs_then);
    assert_eq!(q.get("work", "tags"), tags_then);
    assert_eq!(q.get("work", "features"), "service.cups\t1");
    assert_eq!(q.get("work", "class"), "AppVM");
    assert_same(
        &w.lvm.written("vg", "vm-work-private"),
        bytes_of(&sent.first, "vm-work-private"),
        "and the data",
    );
    // Nothing differs any more: a second restore changes only data.
    restore(&w, &q, named(&["work"])).unwrap();
    assert_eq!(changes(&q), Vec::<String>::new());
}

#[test]
fn data_only_keeps_the_settings_and_another_class_is_refused() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, sent) = setup(&w);
    change_work(&q);
    let prefs_now = q.get("work", "prefs");
    let o = RestoreQubeOptions {
        data_only: true,
        ..named(&["work"])
    };
    let r = restore(&w, &q, o).unwrap();
    assert_eq!(changes(&q), Vec::<String>::new());
    assert!(
        r.warnings.iter().any(|x| x.contains("--data-only")),
        "{:?}",
        r.warnings
    );
    assert_eq!(q.get("work", "prefs"), prefs_now);
    assert_eq!(
        q.get("work", "devices"),
        "pci\tdom0\t00_1f.0\t\trequired",
        "--data-only keeps the assignments too"
    );
    assert_same(
        &w.lvm.written("vg", "vm-work-private"),
        bytes_of(&sent.second, "vm-work-private"),
        "data",
    );
    // An AppVM's record onto the StandaloneVM vault: refused, nothing done.
    let o = RestoreQubeOptions {
        as_name: Some("vault".into()),
        ..named(&["work"])
    };
    let e = format!("{:#}", restore(&w, &q, o).unwrap_err());
    assert!(
        e.contains("vault exists as a StandaloneVM") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(changes(&q), Vec::<String>::new());
}

#[test]
fn a_pool_other_than_the_archives_is_refused_before_anything_changes() {
    let w = World::thin(volume_bytes(1, 1));
    let (q, _) = setup(&w);
    q.fixture_pool_lvm("other", "vg2", "pool2");
    let before = w.lvm.survey("vg").unwrap();
    std::fs::remove_dir_all(q.state.join("qubes/work")).unwrap();
    let o = RestoreQubeOptions {
        pool: Some("other".into()),
        ..named(&["work"])
    };
    let e = format!("{:#}", restore(&w, &q, o).unwrap_err());
    assert!(
        e.contains(
            "--pool=other: pool other (driver lvm_thin, vg2/pool2) is not the pool this \
                    archive backs up (the LVM thin pool vg/pool)"
        ) && e.contains("nothing was changed"),
        "{e}"
    );
    // An existing qube whose volume lives in another pool.
    q.set("vault", "volumes/root/pool", "other");
    let e = format!("{:#}", restore(&w, &q, named(&["vault"])).unwrap_err());
    assert!(
        e.contains("vault:root") && e.contains("is not the pool this archive backs up"),
        "{e}"
    );
    assert_eq!(changes(&q), Vec::<String>::new());
    assert_eq!(w.lvm.survey("vg").unwrap(), before);
}
