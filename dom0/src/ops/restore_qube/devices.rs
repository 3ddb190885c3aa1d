//! Re-creating a qube's device assignments with Qubes' own `qvm-device`,
//! in the form the installed Qubes takes (docs/FORMAT.md §16.4):
//!
//! * R4.2 and earlier assign ports, always persistently (required):
//!   `qvm-device CLASS attach --persistent [-o K=V]… QUBE BACKEND:PORT`
//!   (qubesadmin/tools/qvm_device.py);
//! * R4.3 assigns a device in a port with a mode:
//!   `qvm-device CLASS assign [--required|--ask] [-o K=V]… QUBE
//!   BACKEND:PORT:DEVICE_ID`, `*` as DEVICE_ID for any device in the port
//!   (qvm-device(1), device identity); auto-attach is its default.
//!
//! An assignment is removed in the same two forms: before 4.3 `qvm-device
//! CLASS detach QUBE BACKEND:PORT`, which removes a halted qube's
//! persistent assignment (qubes-core-admin `DeviceCollection.detach`);
//! from 4.3 `qvm-device CLASS unassign QUBE BACKEND:PORT:DEVICE_ID`.
//!
//! Which one is asked of `qvm-device --version` (QubesArgumentParser
//! prints `qvm-device (SUMMARY) VERSION` first). An assignment the
//! installed Qubes cannot express (a mode or a device identity on R4.2)
//! is left out with a warning, as is one whose backend qube is missing.

use crate::qubes::record::DeviceAssignment;
use crate::qubes::QvmTools;
use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceCli {
    /// `attach --persistent` (Qubes before 4.3).
    Attach,
    /// `assign` with a mode and a device identity (Qubes 4.3 and later).
    Assign,
}

/// The form of the installed `qvm-device`, from its `--version`.
pub fn device_cli(qvm: &dyn QvmTools) -> Result<DeviceCli> {
    let out = qvm.run(&["qvm-device", "--version"])?;
    let text = String::from_utf8_lossy(&out);
    let first = text.lines().next().unwrap_or("");
    let word = first.split_whitespace().last().unwrap_or("");
    let mut parts = word.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => match (major, minor) {
            (4, m) if m >= 3 => Ok(DeviceCli::Assign),
            (m, _) if m >= 5 => Ok(DeviceCli::Assign),
            _ => Ok(DeviceCli::Attach),
        },
        _ => bail!("qvm-device --version printed {first:?}, not a version this sparsebak reads"),
    }
}

/// The command that re-creates assignment `d` of `qube`, or why it
/// cannot be.
pub fn argv(cli: DeviceCli, qube: &str, d: &DeviceAssignment) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = vec!["qvm-device".into(), d.class.clone()];
    let target = match cli {
        DeviceCli::Attach => {
            if d.mode != "required" {
                return Err(format!(
                    "it is assigned {} (Qubes 4.3); this Qubes assigns devices only as required",
                    d.mode
                ));
            }
            if d.identity.as_deref().is_some_and(|i| i != "*") {
                return Err(
                    "it is assigned by device identity (Qubes 4.3), which this Qubes \
                            cannot do"
                        .into(),
                );
            }
            argv.extend(["attach".into(), "--persistent".into()]);
            d.device.clone()
        }
        DeviceCli::Assign => {
            argv.push("assign".into());
            match d.mode.as_str() {
                "required" => argv.push("--required".into()),
                "ask-to-attach" => argv.push("--ask".into()),
                _ => {}
            }
            format!("{}:{}", d.device, d.identity.as_deref().unwrap_or("*"))
        }
    };
    for (k, v) in &d.options {
        argv.extend(["-o".into(), format!("{k}={v}")]);
    }
    argv.extend([qube.to_string(), target]);
    Ok(argv)
}

/// The command that removes assignment `d`, as qubes.xml has it, from
/// (halted) `qube`.
pub fn unassign_argv(cli: DeviceCli, qube: &str, d: &DeviceAssignment) -> Vec<String> {
    let (verb, target) = match cli {
        DeviceCli::Attach => ("detach", d.device.clone()),
        DeviceCli::Assign => (
            "unassign",
            format!("{}:{}", d.device, d.identity.as_deref().unwrap_or("*")),
        ),
    };
    vec![
        "qvm-device".into(),
        d.class.clone(),
        verb.into(),
        qube.into(),
        target,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci() -> DeviceAssignment {
        DeviceAssignment {
            class: "pci".into(),
            device: "dom0:00_14.0".into(),
            identity: None,
            mode: "required".into(),
            options: vec![("no-strict-reset".into(), "True".into())],
        }
    }

    #[test]
    fn each_qubes_form() {
        assert_eq!(
            argv(DeviceCli::Attach, "work", &pci()).unwrap(),
            [
                "qvm-device",
                "pci",
                "attach",
                "--persistent",
                "-o",
                "no-strict-reset=True",
                "work",
                "dom0:00_14.0"
            ]
        );
        assert_eq!(
            argv(DeviceCli::Assign, "work", &pci()).unwrap(),
            [
                "qvm-device",
                "pci",
                "assign",
                "--required",
                "-o",
                "no-strict-reset=True",
                "work",
                "dom0:00_14.0:*"
            ]
        );
        let usb = DeviceAssignment {
            class: "usb".into(),
            device: "sys-usb:2-1".into(),
            identity: Some("0x0781:0x5581::u080650".into()),
            mode: "auto-attach".into(),
            options: vec![],
        };
        assert_eq!(
            argv(DeviceCli::Assign, "work", &usb).unwrap(),
            [
                "qvm-device",
                "usb",
                "assign",
                "work",
                "sys-usb:2-1:0x0781:0x5581::u080650"
            ]
        );
        let why = argv(DeviceCli::Attach, "work", &usb).unwrap_err();
        assert!(why.contains("auto-attach"), "{why}");
    }

    #[test]
    fn each_qubes_form_of_removal() {
        assert_eq!(
            unassign_argv(DeviceCli::Attach, "work", &pci()),
            ["qvm-device", "pci", "detach", "work", "dom0:00_14.0"]
        );
        assert_eq!(
            unassign_argv(DeviceCli::Assign, "work", &pci()),
            ["qvm-device", "pci", "unassign", "work", "dom0:00_14.0:*"]
        );
        let usb = DeviceAssignment {
            identity: Some("0x0781:0x5581::u080650".into()),
            ..pci()
        };
        assert_eq!(
            unassign_argv(DeviceCli::Assign, "work", &usb)[4],
            "dom0:00_14.0:0x0781:0x5581::u080650"
        );
    }
}
