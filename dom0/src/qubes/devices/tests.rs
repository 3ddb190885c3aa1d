use super::*;

const WORK: &str = "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70";
const NET: &str = "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f71";

/// qubes.xml as qubesd writes it (R4.2 form for sys-net, R4.3 form for
/// work), with the parts that are not read abridged.
fn sample() -> String {
    format!(
        r#"<?xml version='1.0' encoding='UTF-8'?>
<qubes version="3.0">
  <labels><label id="label-1" color="0xcc0000">red</label></labels>
  <pools>
    <pool name="varlibqubes" dir_path="/var/lib/qubes" driver="file-reflink" revisions_to_keep="1"/>
  </pools>
  <properties><property name="default_netvm" ref="domain-1"/></properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties><property name="qid">0</property><property name="name">dom0</property>
        <property name="uuid">00000000-0000-0000-0000-000000000000</property></properties>
      <features/><tags/>
    </domain>
    <domain id="domain-1" class="AppVM">
      <properties><property name="qid">1</property><property name="name">sys-net</property>
        <property name="uuid">{NET}</property><property name="label" ref="label-1"/></properties>
      <devices class="pci">
        <device backend-domain="dom0" id="00_14.0">
          <option name="no-strict-reset">True</option>
        </device>
      </devices>
      <devices class="usb"/>
    </domain>
    <domain id="domain-2" class="AppVM">
      <properties><property name="name">work</property><property name="uuid">{WORK}</property></properties>
      <features><feature name="service.cups">1</feature></features>
      <devices class="usb">
        <device backend-domain="sys-usb" id="2-1" identity="0x0781:0x5581:4C530001:u080650" mode="auto-attach"/>
      </devices>
      <devices class="block">
        <device backend-domain="sys-usb" id="sda" identity="*" mode="ask-to-attach">
          <option name="read-only">yes</option><option name="frontend-dev">xvdj</option>
        </device>
      </devices>
      <tags><tag name="created-by-dom0"/><tag name="audiovm-dom0"/></tags>
      <volume-config>
        <volume name="private" pool="varlibqubes" vid="appvms/work/private" revisions_to_keep="1" rw="True" save_on_stop="True" size="2147483648"/>
      </volume-config>
    </domain>
  </domains>
</qubes>
"#
    )
}

#[test]
fn r42_assignments_are_required_ports_with_their_options() {
    let a = assignments(sample().as_bytes(), NET).unwrap();
    assert_eq!(
        a.devices,
        [DeviceAssignment {
            class: "pci".into(),
            device: "dom0:00_14.0".into(),
            identity: None,
            mode: "required".into(),
            options: vec![("no-strict-reset".into(), "True".into())],
        }]
    );
    assert!(a.left_out.is_empty());
}

#[test]
fn r43_assignments_keep_identity_and_mode_and_only_the_qubes_own() {
    let a = assignments(sample().as_bytes(), WORK).unwrap();
    assert_eq!(a.devices.len(), 2, "{:?}", a.devices);
    assert_eq!(a.devices[0].class, "usb");
    assert_eq!(a.devices[0].device, "sys-usb:2-1");
    assert_eq!(
        a.devices[0].identity.as_deref(),
        Some("0x0781:0x5581:4C530001:u080650")
    );
    assert_eq!(a.devices[0].mode, "auto-attach");
    assert_eq!(a.devices[1].identity.as_deref(), Some("*"));
    assert_eq!(a.devices[1].mode, "ask-to-attach");
    assert_eq!(
        a.devices[1].options,
        [
            ("read-only".to_string(), "yes".to_string()),
            ("frontend-dev".to_string(), "xvdj".to_string())
        ]
    );
}

#[test]
fn an_assignment_that_fails_the_record_checks_is_left_out_naming_it() {
    let x = sample()
        .replace(
            r#""no-strict-reset">True"#,
            r#""no-strict-reset">$(touch /tmp/x)"#,
        )
        .replace(
            r#"mode="auto-attach""#,
            r#"mode="auto-attach" backend-uuid="x""#,
        );
    let a = assignments(x.as_bytes(), NET).unwrap();
    assert!(a.devices.is_empty());
    assert!(
        a.left_out[0].contains("pci device dom0:00_14.0") && a.left_out[0].contains("option"),
        "{:?}",
        a.left_out
    );
    let a = assignments(x.as_bytes(), WORK).unwrap();
    assert_eq!(a.devices.len(), 1);
    assert!(a.left_out[0].contains("backend-uuid"), "{:?}", a.left_out);
}

#[test]
fn malformed_or_ambiguous_documents_are_errors() {
    let e = |x: &str, u: &str| format!("{:#}", assignments(x.as_bytes(), u).unwrap_err());
    let s = sample();
    assert!(e(&s, "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f79").contains("no qube with uuid"));
    let twice = s.replace(NET, WORK);
    assert!(e(&twice, WORK).contains("two qubes"));
    let cut = &s[..s.len() / 2];
    assert!(e(cut, WORK).contains("qubes.xml"), "{}", e(cut, WORK));
    let nested = s.replace(
        r#"<option name="read-only">yes</option>"#,
        r#"<option name="read-only"><b>yes</b></option>"#,
    );
    assert!(e(&nested, WORK).contains("unexpected <b>"));
    let other_root = s
        .replace("<qubes version", "<qubez version")
        .replace("</qubes>", "</qubez>");
    assert!(e(&other_root, WORK).contains("root element"));
    let long = s.replace(">xvdj<", &format!(">{}<", "x".repeat(5000)));
    assert!(e(&long, WORK).contains("longer than"));
}
