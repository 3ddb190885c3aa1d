//! What the backup VM may ask for, in the service argument
//! (`sparsebak.Restore+ARG`). The VM is not trusted: the argument is
//! bounded and parsed by a strict grammar, and nothing in it ever reaches a
//! shell or a path.
//!
//! ```text
//! list                                     what this VM may restore
//! qube+NAME                                restore qube NAME, newest session
//! qube+NAME+YYYYMMDD-HHMMSS                ... as of that session (UTC)
//! qube+NAME+YYYYMMDD-HHMMSS+as+NEWNAME     ... as a new qube NEWNAME
//! ```
//!
//! `+` separates fields because qrexec passes it unchanged in arguments
//! that VMs send (every character outside `[A-Za-z0-9_.+-]` becomes `_`),
//! and no qube name or session time contains it.

use crate::qubes::check_qube_name;
use sparsebak_common::names::SessionName;

/// Longest argument accepted (qube names are at most 31 bytes).
pub const MAX_ARG: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    List,
    Qube {
        name: String,
        session: Option<SessionName>,
        as_name: Option<String>,
    },
}

fn qube(name: &str, what: &str) -> Result<String, String> {
    check_qube_name(name).map_err(|_| format!("{what} {name:?} is not a valid qube name"))?;
    if name == "dom0" {
        return Err("dom0 is never restored by request from a VM".into());
    }
    Ok(name.to_string())
}

fn session(ts: &str) -> Result<SessionName, String> {
    let ok = ts.len() == 15
        && ts.as_bytes()[8] == b'-'
        && ts
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit());
    if !ok {
        return Err(format!("{ts:?} is not a session time YYYYMMDD-HHMMSS"));
    }
    SessionName::from_timestamp(ts).map_err(|e| format!("{ts:?}: {e}"))
}

/// Parse the service argument; `Err` is the refusal sent back.
pub fn parse(arg: &str) -> Result<Request, String> {
    if arg.len() > MAX_ARG {
        return Err(format!("the request is longer than {MAX_ARG} bytes"));
    }
    if !arg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
    {
        return Err("the request holds characters outside [A-Za-z0-9_.+-]".into());
    }
    let f: Vec<&str> = arg.split('+').collect();
    match f.as_slice() {
        ["list"] => Ok(Request::List),
        ["qube", n] => Ok(Request::Qube {
            name: qube(n, "qube")?,
            session: None,
            as_name: None,
        }),
        ["qube", n, s] => Ok(Request::Qube {
            name: qube(n, "qube")?,
            session: Some(session(s)?),
            as_name: None,
        }),
        ["qube", n, s, "as", new] => Ok(Request::Qube {
            name: qube(n, "qube")?,
            session: Some(session(s)?),
            as_name: Some(qube(new, "new name")?),
        }),
        _ => Err(format!(
            "malformed request {arg:?}: expected list, qube+NAME, qube+NAME+YYYYMMDD-HHMMSS \
             or qube+NAME+YYYYMMDD-HHMMSS+as+NEWNAME"
        )),
    }
}

/// Check the calling VM's name (`QREXEC_REMOTE_DOMAIN`, set by qrexec).
pub fn caller(raw: Option<&str>) -> Result<String, String> {
    let Some(c) = raw.filter(|c| !c.is_empty()) else {
        return Err("no calling VM (QREXEC_REMOTE_DOMAIN is not set): run only by qrexec".into());
    };
    if c == "dom0" {
        return Err("requests come from the backup VM, not from dom0".into());
    }
    check_qube_name(c).map_err(|_| format!("calling VM {c:?} is not a valid qube name"))?;
    Ok(c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_strict() {
        assert_eq!(parse("list"), Ok(Request::List));
        assert_eq!(
            parse("qube+work"),
            Ok(Request::Qube {
                name: "work".into(),
                session: None,
                as_name: None
            })
        );
        let r = parse("qube+work+20261201-120000+as+work-old").unwrap();
        assert_eq!(
            r,
            Request::Qube {
                name: "work".into(),
                session: Some(SessionName::from_timestamp("20261201-120000").unwrap()),
                as_name: Some("work-old".into())
            }
        );
        for (bad, says) in [
            ("", "malformed request"),
            ("list+x", "malformed"),
            ("LIST", "malformed"),
            ("qube", "malformed"),
            ("qube+", "not a valid qube name"),
            ("qube+dom0", "dom0 is never restored"),
            (
                "qube+work+20261201-120000+as+dom0",
                "dom0 is never restored",
            ),
            ("qube+1work", "not a valid qube name"),
            ("qube+work+2026-12-01", "not a session time"),
            ("qube+work+20261301-120000", "20261301-120000"),
            ("qube+work+20261201-120000+as", "malformed"),
            ("qube+work+20261201-120000+to+x", "malformed"),
            ("qube+../etc", "outside"),
            ("qube+a;b", "outside"),
            ("qube+work\n", "outside"),
            (
                "qube+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "not a valid qube name",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let long = format!("qube+{}", "a".repeat(200));
        assert!(parse(&long).unwrap_err().contains("longer than 100 bytes"));
    }

    #[test]
    fn the_caller_must_be_a_vm() {
        assert_eq!(caller(Some("sys-backup")).unwrap(), "sys-backup");
        assert!(caller(None).unwrap_err().contains("QREXEC_REMOTE_DOMAIN"));
        assert!(caller(Some("")).is_err());
        assert!(caller(Some("dom0")).unwrap_err().contains("not from dom0"));
        assert!(caller(Some("a b"))
            .unwrap_err()
            .contains("not a valid qube name"));
    }
}
