//! How each destination kind reaches its agent: the exact argv (built from
//! validated parts, never through a local shell), what to run first, what to
//! write before the protocol starts, and how to explain a failed link.
//!
//! * `internal:`  the local agent binary.
//! * `ssh://`     `ssh -T -e none [-p PORT] -- TARGET sparsebak-agent`; the
//!   user's ssh config applies (only `-T`/`-e none` are forced, because a
//!   pseudo-terminal or escape characters would corrupt the binary stream).
//! * `qubes://`   `qvm-start --skip-if-running VM`, then
//!   `qrexec-client -d VM "DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0"`
//!   (never `-t`/`-T`).
//! * `qubes-ssh://` the same service with argument `relay`; the ssh target
//!   travels as the first line on stdin (see [`relay_header`] and
//!   docs/DESTINATIONS.md for why not in the argument).

use super::link::{status_words, Ended};
use super::{DestKind, DestSpec, TransportOptions};
use std::ffi::OsString;
use std::path::PathBuf;

/// The agent's command name on ssh hosts (looked up on the remote PATH).
pub const REMOTE_AGENT: &str = "sparsebak-agent";
/// The qrexec service in the backup VM.
pub const SERVICE: &str = "qubes.SparsebakStore";
/// Service argument: run the agent in the VM.
pub const ARG_AGENT: &str = "agent";
/// Service argument: relay onward over ssh to the target named on stdin.
pub const ARG_RELAY: &str = "relay";
/// Version of the relay header line.
pub const RELAY_VERSION: u32 = 1;
/// The service's exit code when the relay's ssh itself failed (ssh's own
/// 255, moved so it is not taken for qrexec-client's 255, a lost
/// connection).
pub const RELAY_SSH_FAILED: i32 = 224;

/// What a hint for installing the agent says, for every transport.
const INSTALL_HINT: &str = "install it there: copy the statically linked sparsebak-agent \
     to /usr/local/bin/ (it needs no libraries), or install the sparsebak-agent package; \
     see \"Destinations\" in the README";

/// Who runs the agent; used to explain a failed link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    Local,
    Ssh { target: String },
    Qrexec { vm: String },
    Relay { vm: String, target: String },
}

/// Everything needed to start the pipe to one destination's agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// A command to run to completion first (`qvm-start`).
    pub before: Option<(PathBuf, Vec<String>)>,
    /// Bytes to write before the protocol's Hello (the relay header).
    pub preamble: Option<Vec<u8>>,
    pub via: Via,
}

fn ssh_args(target: &str, port: Option<u16>) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-T".into(), "-e".into(), "none".into()];
    if let Some(p) = port {
        a.push("-p".into());
        a.push(p.to_string().into());
    }
    a.push("--".into());
    a.push(target.into());
    a.push(REMOTE_AGENT.into());
    a
}

/// The line that tells the relay in the VM where to go:
/// `sparsebak-relay 1 TARGET PORT\n`, PORT `-` for ssh's own default.
/// TARGET has been validated by [`DestSpec::parse`] (`[A-Za-z0-9._@-]`, no
/// leading `-`); the service checks it again.
pub fn relay_header(target: &str, port: Option<u16>) -> String {
    let port = port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    format!("sparsebak-relay {RELAY_VERSION} {target} {port}\n")
}

fn qrexec(vm: &str, arg: &str, opts: &TransportOptions) -> (PathBuf, Vec<OsString>) {
    (
        opts.qrexec_client.clone(),
        vec![
            "-d".into(),
            vm.into(),
            format!("DEFAULT:QUBESRPC {SERVICE}+{arg} dom0").into(),
        ],
    )
}

fn qvm_start(vm: &str, opts: &TransportOptions) -> Option<(PathBuf, Vec<String>)> {
    opts.qvm_start
        .as_ref()
        .map(|p| (p.clone(), vec!["--skip-if-running".into(), vm.into()]))
}

/// The plan for `spec`.
pub fn plan(spec: &DestSpec, opts: &TransportOptions) -> Plan {
    match &spec.kind {
        DestKind::Internal => Plan {
            program: opts.agent.clone(),
            args: vec![],
            before: None,
            preamble: None,
            via: Via::Local,
        },
        DestKind::Ssh { target, port } => Plan {
            program: opts.ssh.clone(),
            args: ssh_args(target, *port),
            before: None,
            preamble: None,
            via: Via::Ssh {
                target: target.clone(),
            },
        },
        DestKind::Qubes { vm } => {
            let (program, args) = qrexec(vm, ARG_AGENT, opts);
            Plan {
                program,
                args,
                before: qvm_start(vm, opts),
                preamble: None,
                via: Via::Qrexec { vm: vm.clone() },
            }
        }
        DestKind::QubesSsh { vm, target, port } => {
            let (program, args) = qrexec(vm, ARG_RELAY, opts);
            Plan {
                program,
                args,
                before: qvm_start(vm, opts),
                preamble: Some(relay_header(target, *port).into_bytes()),
                via: Via::Relay {
                    vm: vm.clone(),
                    target: target.clone(),
                },
            }
        }
    }
}

/// Did a shell say it cannot find the agent?
fn agent_missing(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        l.contains(REMOTE_AGENT) && (l.contains("not found") || l.contains("No such file"))
    })
}

impl Via {
    /// Why the program could not even be started.
    pub fn spawn_hint(&self) -> &'static str {
        match self {
            Via::Local => "is sparsebak-agent installed beside sparsebak? (SPARSEBAK_AGENT overrides)",
            Via::Ssh { .. } => "is the ssh client installed? (SPARSEBAK_SSH overrides)",
            Via::Qrexec { .. } | Via::Relay { .. } => {
                "qubes:// destinations work only in Qubes OS dom0 (SPARSEBAK_QREXEC_CLIENT overrides)"
            }
        }
    }

    /// Explain how the link ended, quoting the child's last words.
    pub fn explain(&self, e: &Ended) -> String {
        let said = e.last_lines(3);
        let quote = if said.is_empty() {
            String::new()
        } else {
            format!("; it said: {said}")
        };
        let Some(st) = e.status else {
            return format!("the transport did not exit and was stopped{quote}");
        };
        let how = status_words(&st);
        let code = st.code();
        match self {
            Via::Local => format!("the agent {how}{quote}"),
            Via::Ssh { target } => match code {
                Some(127) => format!(
                    "sparsebak-agent is not installed on {target}, or not on the PATH of its \
                     non-interactive ssh sessions (ssh {how}{quote}); {INSTALL_HINT}"
                ),
                _ if agent_missing(&e.stderr) => format!(
                    "sparsebak-agent is not installed on {target} (ssh {how}{quote}); {INSTALL_HINT}"
                ),
                Some(255) => format!("ssh to {target} failed (ssh {how}{quote})"),
                None => format!("ssh to {target} {how}: the link broke{quote}"),
                Some(_) => format!("the agent on {target} {how}{quote}"),
            },
            Via::Qrexec { vm } | Via::Relay { vm, .. } => self.explain_qrexec(vm, code, &how, &quote),
        }
    }

    /// [`Via::explain`] for the qrexec transports. Decided by the exit code
    /// alone: real qrexec-client says nothing on stderr for most of them.
    fn explain_qrexec(&self, vm: &str, code: Option<i32>, how: &str, quote: &str) -> String {
        let svc = format!("the {SERVICE} service in VM {vm}");
        let relay = match self {
            Via::Relay { target, .. } => Some(target.as_str()),
            _ => None,
        };
        match (code, relay) {
            (Some(127), _) => format!(
                "VM {vm} has no qrexec service {SERVICE} (qrexec-client {how}{quote}); \
                 install the sparsebak-agent package in its template, or copy \
                 qubes-rpc/{SERVICE} to /etc/qubes-rpc/ and sparsebak-agent to \
                 /usr/local/bin/ in the VM"
            ),
            (Some(126), _) => format!("qrexec refused to run {svc} (qrexec-client {how}{quote})"),
            (Some(125), _) => format!(
                "qrexec could not start {svc}: the service file is not executable, or the VM \
                 is not running (qrexec-client {how}{quote})"
            ),
            (Some(255), _) => format!(
                "the qrexec connection to VM {vm} was lost before {svc} reported how it ended \
                 (qrexec-client {how}{quote}){}",
                if relay.is_some() {
                    "; a sparsebak-agent package older than dom0's sparsebak in the VM also \
                     reports a failed relay ssh this way"
                } else {
                    ""
                }
            ),
            (Some(69), _) => format!("{svc} is missing a program ({how}{quote}); {INSTALL_HINT}"),
            (Some(64 | 65), _) => format!(
                "{svc} refused the request ({how}{quote}); install the same sparsebak \
                 version in dom0 and in the VM"
            ),
            (Some(227), Some(target)) => format!(
                "sparsebak-agent is not installed on {target}, reached over ssh from VM {vm} \
                 ({svc} {how}{quote}); {INSTALL_HINT}"
            ),
            (Some(225 | 226), Some(target)) => format!(
                "{target} could not run sparsebak-agent, reached over ssh from VM {vm} ({svc} {how}{quote})"
            ),
            (Some(RELAY_SSH_FAILED), Some(target)) => {
                format!("ssh from VM {vm} to {target} failed ({svc} {how}{quote})")
            }
            (Some(c @ 129..=159), Some(target)) => format!(
                "the relay's ssh from VM {vm} to {target} was killed by signal {}: the link broke ({svc} {how}{quote})",
                c - 128
            ),
            (None, _) => format!("qrexec-client for VM {vm} {how}: the link broke{quote}"),
            (Some(_), Some(target)) => {
                format!("the agent on {target}, relayed by VM {vm}, {how}{quote}")
            }
            (Some(_), None) => format!("the agent in VM {vm} {how}{quote}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn opts() -> TransportOptions {
        TransportOptions {
            agent: "/opt/sb/sparsebak-agent".into(),
            ssh: "/usr/bin/ssh".into(),
            qrexec_client: "/usr/lib/qubes/qrexec-client".into(),
            qvm_start: Some("qvm-start".into()),
        }
    }

    fn argv(p: &Plan) -> Vec<String> {
        std::iter::once(p.program.to_string_lossy().into_owned())
            .chain(p.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    fn spec(d: &str) -> DestSpec {
        DestSpec::parse(d, "sub").unwrap()
    }

    #[test]
    fn internal_runs_the_local_agent() {
        let p = plan(&spec("internal:/mnt/bk"), &opts());
        assert_eq!(argv(&p), ["/opt/sb/sparsebak-agent"]);
        assert_eq!(p.via, Via::Local);
    }

    #[test]
    fn ssh_argv_has_no_shell_text_and_keeps_user_config() {
        let p = plan(&spec("ssh://backup@nas.lan:2222/srv/bk"), &opts());
        assert_eq!(
            argv(&p),
            [
                "/usr/bin/ssh",
                "-T",
                "-e",
                "none",
                "-p",
                "2222",
                "--",
                "backup@nas.lan",
                "sparsebak-agent"
            ]
        );
        let p = plan(&spec("ssh://nas/srv"), &opts());
        assert_eq!(
            argv(&p),
            [
                "/usr/bin/ssh",
                "-T",
                "-e",
                "none",
                "--",
                "nas",
                "sparsebak-agent"
            ]
        );
        // No path travels on the command line: it goes inside Open.
        assert!(!argv(&p).iter().any(|a| a.contains("/srv")));
        assert!(p.before.is_none() && p.preamble.is_none());
    }

    #[test]
    fn qubes_starts_the_vm_and_calls_the_service() {
        let p = plan(&spec("qubes://sys-backup/mnt/usb"), &opts());
        assert_eq!(
            argv(&p),
            [
                "/usr/lib/qubes/qrexec-client",
                "-d",
                "sys-backup",
                "DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0"
            ]
        );
        assert!(!argv(&p).iter().any(|a| a == "-t" || a == "-T"));
        assert_eq!(
            p.before,
            Some((
                "qvm-start".into(),
                vec!["--skip-if-running".into(), "sys-backup".into()]
            ))
        );
        let mut o = opts();
        o.qvm_start = None;
        assert!(plan(&spec("qubes://v/m"), &o).before.is_none());
    }

    #[test]
    fn qubes_ssh_relays_with_a_header() {
        let p = plan(
            &spec("qubes-ssh://sys-net|me@host.example:2200/mnt"),
            &opts(),
        );
        assert_eq!(
            argv(&p),
            [
                "/usr/lib/qubes/qrexec-client",
                "-d",
                "sys-net",
                "DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0"
            ]
        );
        assert_eq!(
            p.preamble.as_deref(),
            Some(&b"sparsebak-relay 1 me@host.example 2200\n"[..])
        );
        assert_eq!(relay_header("h", None), "sparsebak-relay 1 h -\n");
    }

    fn ended(code: i32, stderr: &str) -> Ended {
        Ended {
            status: Some(ExitStatus::from_raw(code << 8)),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn explains_a_missing_agent() {
        let ssh = Via::Ssh {
            target: "me@nas".into(),
        };
        let m = ssh.explain(&ended(
            127,
            "bash: line 1: sparsebak-agent: command not found\n",
        ));
        assert!(
            m.starts_with("sparsebak-agent is not installed on me@nas, or not on the PATH of its non-interactive ssh sessions (ssh exited with status 127; it said: bash: line 1: sparsebak-agent: command not found); install it there: copy the statically linked sparsebak-agent to /usr/local/bin/"),
            "{m}"
        );
        let m = ssh.explain(&ended(1, "sh: 1: sparsebak-agent: not found"));
        assert!(
            m.starts_with("sparsebak-agent is not installed on me@nas (ssh exited with status 1"),
            "{m}"
        );
        let relay = Via::Relay {
            vm: "sys-net".into(),
            target: "me@nas".into(),
        };
        let m = relay.explain(&ended(227, ""));
        assert!(m.starts_with("sparsebak-agent is not installed on me@nas, reached over ssh from VM sys-net (the qubes.SparsebakStore service in VM sys-net exited with status 227); install it"), "{m}");
        let q = Via::Qrexec { vm: "bk".into() };
        assert!(q
            .explain(&ended(127, ""))
            .starts_with("VM bk has no qrexec service qubes.SparsebakStore (qrexec-client exited with status 127)"));
    }

    #[test]
    fn explains_broken_links() {
        let ssh = Via::Ssh {
            target: "nas".into(),
        };
        let killed = Ended {
            status: Some(ExitStatus::from_raw(9)),
            stderr: String::new(),
        };
        assert_eq!(
            ssh.explain(&killed),
            "ssh to nas was killed by signal 9: the link broke"
        );
        assert_eq!(
            ssh.explain(&ended(255, "ssh: connect to host nas port 22: Connection refused\n")),
            "ssh to nas failed (ssh exited with status 255; it said: ssh: connect to host nas port 22: Connection refused)"
        );
        let relay = Via::Relay {
            vm: "sys-net".into(),
            target: "nas".into(),
        };
        assert_eq!(
            relay.explain(&ended(143, "")),
            "the relay's ssh from VM sys-net to nas was killed by signal 15: the link broke (the qubes.SparsebakStore service in VM sys-net exited with status 143)"
        );
        assert_eq!(
            Via::Qrexec { vm: "bk".into() }.explain(&killed),
            "qrexec-client for VM bk was killed by signal 9: the link broke"
        );
    }

    #[test]
    fn qrexec_codes_are_explained_by_status_alone() {
        let q = Via::Qrexec { vm: "bk".into() };
        // Real qrexec-client prints nothing for these.
        assert_eq!(
            q.explain(&ended(255, "")),
            "the qrexec connection to VM bk was lost before the qubes.SparsebakStore service in VM bk reported how it ended (qrexec-client exited with status 255)"
        );
        assert_eq!(
            q.explain(&ended(125, "")),
            "qrexec could not start the qubes.SparsebakStore service in VM bk: the service file is not executable, or the VM is not running (qrexec-client exited with status 125)"
        );
        assert!(q
            .explain(&ended(127, ""))
            .starts_with("VM bk has no qrexec service qubes.SparsebakStore (qrexec-client exited with status 127); install"));
        let relay = Via::Relay {
            vm: "sys-net".into(),
            target: "nas".into(),
        };
        assert_eq!(
            relay.explain(&ended(224, "ssh: connect to host nas port 22: Connection refused\n")),
            "ssh from VM sys-net to nas failed (the qubes.SparsebakStore service in VM sys-net exited with status 224; it said: ssh: connect to host nas port 22: Connection refused)"
        );
        let m = relay.explain(&ended(255, ""));
        assert!(
            m.starts_with("the qrexec connection to VM sys-net was lost before the qubes.SparsebakStore service in VM sys-net reported how it ended (qrexec-client exited with status 255); a sparsebak-agent package older"),
            "{m}"
        );
    }
}
