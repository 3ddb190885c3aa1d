use super::*;

const UUID: &str = "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70";

pub fn sample() -> QubeRecord {
    QubeRecord {
        format: FORMAT.into(),
        version: VERSION,
        uuid: UUID.into(),
        name: "work".into(),
        class: "AppVM".into(),
        template: Some("fedora-41".into()),
        label: "red".into(),
        properties: vec![
            ("netvm".into(), "sys-firewall".into()),
            ("kernelopts".into(), "nopat swiotlb=2048".into()),
        ],
        features: vec![("service.cups".into(), "1".into())],
        tags: vec!["created-by-dom0".into()],
        firewall: vec![
            "action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443".into(),
            "action=accept specialtarget=dns".into(),
            "action=drop comment=no other traffic".into(),
        ],
        devices: vec![DeviceAssignment {
            class: "pci".into(),
            device: "dom0:00_14.0".into(),
            identity: None,
            mode: "required".into(),
            options: vec![("no-strict-reset".into(), "True".into())],
        }],
        volumes: vec![RecordVolume {
            volume: "private".into(),
            archive: archive_volume(UUID, "private"),
            session: "S_20261205-080000".into(),
            size: 2 << 30,
        }],
        created_utc: "2026-12-05T08:00:00Z".into(),
    }
}

#[test]
fn round_trip() {
    let r = sample();
    let bytes = r.encode().unwrap();
    assert_eq!(QubeRecord::parse(&bytes).unwrap(), r);
    assert_eq!(r.property("netvm"), Some("sys-firewall"));
}

fn refused(f: impl FnOnce(&mut QubeRecord)) -> String {
    let mut r = sample();
    f(&mut r);
    let bytes = serde_json::to_vec(&r).unwrap();
    format!("{:#}", QubeRecord::parse(&bytes).unwrap_err())
}

#[test]
fn hostile_records_are_refused_naming_the_field() {
    let m = refused(|r| r.properties.push(("kernelopts2".into(), "a\nb".into())));
    assert!(m.contains("control character"), "{m}");
    let m = refused(|r| r.name = "work;rm -rf /".into());
    assert!(m.contains("not a valid qube name"), "{m}");
    let m = refused(|r| r.template = Some("$(touch x)".into()));
    assert!(m.contains("not a valid qube name"), "{m}");
    let m = refused(|r| r.properties.push(("netvm".into(), "x".into())));
    assert!(m.contains("twice"), "{m}");
    let m = refused(|r| r.properties.push(("Bad-Name".into(), "x".into())));
    assert!(m.contains("property name"), "{m}");
    let m = refused(|r| r.tags.push("a b".into()));
    assert!(m.contains("tag"), "{m}");
    let m = refused(|r| r.features.push(("--force".into(), "1".into())));
    assert!(m.contains("feature name"), "{m}");
    let m = refused(|r| r.properties.push(("kernel".into(), "--evil".into())));
    assert!(m.contains("starting with '-'"), "{m}");
    let m = refused(|r| r.firewall.push("action=accept dsthost=$(id)".into()));
    assert!(m.contains("firewall rule"), "{m}");
    let m = refused(|r| r.firewall.push("dsthost=1.2.3.4".into()));
    assert!(m.contains("no action"), "{m}");
    let m = refused(|r| r.volumes[0].archive = "qube.other.private".into());
    assert!(m.contains("archive volume"), "{m}");
    let m = refused(|r| r.volumes[0].session = "S_../../x".into());
    assert!(m.contains("session"), "{m}");
    let m = refused(|r| r.class = "TemplateVM".into());
    assert!(m.contains("names a template"), "{m}");
    let m = refused(|r| r.devices[0].device = "dom0:../x".into());
    assert!(m.contains("port"), "{m}");
    let m = refused(|r| r.version = 2);
    assert!(m.contains("version 2"), "{m}");
}

#[test]
fn unknown_fields_and_oversized_records_are_refused() {
    let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
    v["surprise"] = "x".into();
    let e = QubeRecord::parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("surprise"), "{e:#}");
    let big = vec![b' '; MAX_RECORD as usize + 1];
    let e = QubeRecord::parse(&big).unwrap_err();
    assert!(format!("{e:#}").contains("larger than"), "{e:#}");
    let mut r = sample();
    r.features = (0..1000)
        .map(|i| (format!("f{i}"), "v".repeat(400)))
        .collect();
    let e = r.encode().unwrap_err();
    assert!(format!("{e:#}").contains("more than"), "{e:#}");
}

#[test]
fn shell_metacharacters_are_just_characters() {
    let mut r = sample();
    r.properties.push((
        "kernelopts_extra".into(),
        "$(touch /tmp/pwned); `id` | & > <".into(),
    ));
    let back = QubeRecord::parse(&r.encode().unwrap()).unwrap();
    assert_eq!(
        back.property("kernelopts_extra"),
        Some("$(touch /tmp/pwned); `id` | & > <")
    );
}
