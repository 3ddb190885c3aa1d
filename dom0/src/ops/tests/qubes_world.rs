//! Qubes for whole-command tests: the qvm-* stand-ins of `tests/standins/`
//! (shell scripts playing Qubes' tools over a state directory, recording
//! every call) beside a [`World`] whose FakeLvm holds the qubes' LVs.

use super::harness::World;
use crate::qubes::QvmCli;
use std::path::PathBuf;
use std::process::Command;

pub struct Qubes {
    pub state: PathBuf,
    pub qvm: QvmCli,
}

pub fn standins_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/standins")
}

impl Qubes {
    /// Stand-ins with pool `vm-pool` = the World's thin pool `vg/pool`.
    pub fn new(w: &World) -> Qubes {
        let state = w.path("qubes-state");
        std::fs::create_dir_all(&state).unwrap();
        let q = Qubes {
            qvm: QvmCli {
                dir: Some(standins_dir()),
                env: vec![("QVM_STANDIN_STATE".into(), state.clone().into())],
                qubes_xml: Some(state.join("qubes.xml")),
            },
            state,
        };
        q.fixture(&["--pool", "vm-pool", "lvm_thin", "vg", "pool"]);
        q
    }

    pub fn fixture_pool(&self, name: &str, driver: &str) {
        self.fixture(&["--pool", name, driver, "", ""]);
    }

    pub fn fixture_pool_lvm(&self, name: &str, vg: &str, thin: &str) {
        self.fixture(&["--pool", name, "lvm_thin", vg, thin]);
    }

    pub fn fixture(&self, args: &[&str]) {
        let st = Command::new(standins_dir().join("make-qube"))
            .args(args)
            .env("QVM_STANDIN_STATE", &self.state)
            .status()
            .unwrap();
        assert!(st.success(), "make-qube {args:?}");
    }

    /// A qube as `make-qube` makes it; its LVs go into `w`'s FakeLvm.
    pub fn make(
        &self,
        w: &World,
        name: &str,
        class: &str,
        state: &str,
        template: &str,
        data: &[Vec<u8>],
    ) {
        self.fixture(&[name, class, state, template]);
        let vols: &[&str] = match class {
            "TemplateVM" | "StandaloneVM" => &["private", "root"],
            _ => &["private"],
        };
        for (v, d) in vols.iter().zip(data) {
            w.lvm.add_volume(&format!("vm-{name}-{v}"), d.clone());
            self.set(name, &format!("volumes/{v}/size"), &d.len().to_string());
        }
    }

    /// Write one of a stand-in qube's state files.
    pub fn set(&self, qube: &str, file: &str, value: &str) {
        std::fs::write(
            self.state.join("qubes").join(qube).join(file),
            format!("{value}\n"),
        )
        .unwrap();
    }

    /// Write qubes.xml again from the stand-in qubes (after [`Qubes::set`]
    /// of their devices), as qubesd would after a change.
    pub fn write_qubes_xml(&self) {
        let st = Command::new(standins_dir().join("render-qubes-xml"))
            .env("QVM_STANDIN_STATE", &self.state)
            .status()
            .unwrap();
        assert!(st.success(), "render-qubes-xml");
    }

    pub fn get(&self, qube: &str, file: &str) -> String {
        std::fs::read_to_string(self.state.join("qubes").join(qube).join(file))
            .unwrap()
            .trim_end()
            .to_string()
    }

    pub fn uuid(&self, qube: &str) -> String {
        self.get(qube, "uuid")
    }

    /// Every call so far, then forgets them.
    pub fn take_calls(&self) -> Vec<String> {
        let p = self.state.join("calls");
        let s = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        s.lines().map(String::from).collect()
    }

    /// Run a stand-in directly (to change a qube as a user would).
    pub fn run(&self, argv: &[&str]) {
        use crate::qubes::QvmTools;
        self.qvm.run(argv).unwrap();
        self.take_calls();
    }
}
