//! An interrupted prune, at every step on either side, is completed by the
//! next sparsebak run (a send, a prune, even a verify or a receive), after
//! which every remaining session restores exactly as before. The steps are
//! hit with test-only hooks that `abort()` sparsebak or the agent, as
//! `kill -9` would; the last tests send a real SIGKILL to sparsebak or to
//! the agent at random moments.

use crate::common::*;
use crate::prune_support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const AGENT_AT: &str = "SPARSEBAK_AGENT_CRASH_AT";
const AGENT_RENAMES: &str = "SPARSEBAK_AGENT_CRASH_AFTER_RENAMES";
const DOM0_AT: &str = "SPARSEBAK_TEST_CRASH_AT";

/// Prune sessions 0 and 1 of a four-session history into session 2 with
/// `hook` set; the prune must die. Then `next` must complete it.
fn crash_then(hook: (&str, &str), next: &str) {
    let h = Hist::new(&standard_steps()[..4]);
    let names = h.names();
    let range = format!("--session={},{}", names[0], names[1]);
    let out = run_env(&h.e, &["prune", VOL, "-u", &range], &[hook]);
    assert_ne!(
        out.code, 0,
        "{hook:?}: the prune was not interrupted: {out:#?}"
    );
    assert!(
        h.e.meta.join("volumes").join(VOL).join(".prune").is_dir(),
        "{hook:?}: no journal"
    );
    let save = format!("--save-to={}", h.e.path("restored").display());
    let next: &[&str] = match next {
        "send" => &["send", "-u"],
        "verify" => &["verify", VOL],
        "prune" => &["prune", "-u", "--keep-last=99"],
        "receive" => &["receive", VOL, "-u", &save],
        other => panic!("no such next step {other}"),
    };
    // After a dom0 crash its agent may still hold the archive's lock.
    let out = run_when_unlocked(&h.e, next);
    assert_eq!(out.code, 0, "{hook:?} then {next:?}: {out:#?}");
    assert!(
        out.stderr
            .contains(&format!("Completing an interrupted prune of volume {VOL}")),
        "{hook:?} then {next:?}: {}",
        out.stderr
    );
    h.check(&names[2..]);
}

#[test]
fn agent_killed_at_each_step() {
    crash_then((AGENT_AT, "plan"), "send");
    crash_then((AGENT_RENAMES, "0"), "verify");
    crash_then((AGENT_RENAMES, "1"), "prune");
    crash_then((AGENT_RENAMES, "7"), "receive");
    crash_then((AGENT_AT, "target"), "send");
    crash_then((AGENT_AT, "removed"), "verify");
}

#[test]
fn sparsebak_killed_at_each_step() {
    crash_then((DOM0_AT, "journal"), "send");
    crash_then((DOM0_AT, "agent-done"), "prune");
    crash_then((DOM0_AT, "local-target"), "receive");
}

#[test]
fn killed_again_while_completing() {
    let h = Hist::new(&standard_steps()[..4]);
    let names = h.names();
    let range = format!("--session={},{}", names[0], names[1]);
    let out = run_env(&h.e, &["prune", VOL, "-u", &range], &[(AGENT_RENAMES, "2")]);
    assert_ne!(out.code, 0, "{out:#?}");
    // The completing run dies too, on each side in turn.
    let out = run_env(&h.e, &["send", "-u"], &[(AGENT_AT, "target")]);
    assert_ne!(out.code, 0, "{out:#?}");
    let out = run_env(&h.e, &["send", "-u"], &[(DOM0_AT, "agent-done")]);
    assert_ne!(out.code, 0, "{out:#?}");
    let out = run_when_unlocked(&h.e, &["verify", VOL]);
    assert_eq!(out.code, 0, "{out:#?}");
    h.check(&names[2..]);
    // Sessions sent after the prune chain onto the merged target.
    write_at(&h.e.img(VOL), 0, &random_bytes(100_000, 77));
    h.e.ok(&["send", "-u"]);
    let all = h.names();
    assert_eq!(all.len(), 3);
    let s = h.e.receive_sha(VOL, None, "after-prune-send");
    assert_eq!(s, sha256_file(&h.e.img(VOL)));
}

#[test]
fn a_reader_without_the_lock_is_refused_by_the_agent_not_misled() {
    // The local journal is gone (as if dom0's metadata were restored from a
    // backup) but the agent's plan remains: a read-only agent refuses to
    // serve the half-moved volume.
    let h = Hist::new(&standard_steps()[..3]);
    let names = h.names();
    let out = run_env(
        &h.e,
        &["prune", VOL, "-u", &format!("--session={}", names[0])],
        &[(AGENT_AT, "plan")],
    );
    assert_ne!(out.code, 0, "{out:#?}");
    std::fs::remove_dir_all(h.e.meta.join("volumes").join(VOL).join(".prune")).unwrap();
    h.e.run(&["verify", VOL])
        .expect(1, &["volume vm-data has an unfinished prune"]);
}

/// Which process a random-moment test kills.
#[derive(Clone, Copy, PartialEq)]
enum Victim {
    Sparsebak,
    Agent,
}

/// The agent processes that `pid` has started (children of any thread).
fn agents_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    out
}

/// Prune the two oldest of three sessions and send SIGKILL to `victim`
/// `delay_ms` after sparsebak (or the agent) started; then the next run
/// must find the archive unchanged or complete the prune, and every
/// session left must restore as before. Returns what happened, in words.
fn kill_prune_at(victim: Victim, seeds: u64, delay_ms: u64) -> String {
    let steps: Vec<Step> = match seeds {
        0 => vec![
            |p| write_file(p, &random_bytes(24 * MIB + 100, 5)),
            |p| write_at(p, 3 * MIB, &random_bytes(2 * MIB, 6)),
            |p| write_at(p, 20 * MIB, &random_bytes(MIB, 7)),
        ],
        _ => vec![
            |p| write_file(p, &random_bytes(24 * MIB + 100, 15)),
            |p| write_at(p, 3 * MIB, &random_bytes(3 * MIB, 16)),
            |p| write_at(p, 20 * MIB, &random_bytes(MIB, 17)),
        ],
    };
    let h = Hist::new(&steps);
    let names = h.names();
    let mut child = Command::new(sparsebak_bin())
        .args([
            "prune",
            VOL,
            "-u",
            &format!("--session={},{}", names[0], names[1]),
        ])
        .env("SPARSEBAK_META_DIR", &h.e.meta)
        .env("SPARSEBAK_AGENT", agent_bin())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let killed = match victim {
        Victim::Sparsebak => {
            std::thread::sleep(Duration::from_millis(delay_ms));
            child.kill().is_ok()
        }
        Victim::Agent => {
            // A real SIGKILL of the agent process (no hook), timed from its start.
            let started = std::time::Instant::now();
            let mut agent = None;
            while agent.is_none() && started.elapsed() < Duration::from_secs(20) {
                agent = agents_of(child.id()).first().copied();
                if child.try_wait().unwrap().is_some() {
                    break;
                }
            }
            agent.is_some_and(|a| {
                std::thread::sleep(Duration::from_millis(delay_ms));
                let pid = nix::unistd::Pid::from_raw(a);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok()
            })
        }
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if victim == Victim::Agent && !out.status.success() {
        assert!(
            stderr.contains("agent") || stderr.contains("destination"),
            "agent killed after {delay_ms} ms: the error does not say what failed: {stderr}"
        );
    }
    let next = run_when_unlocked(&h.e, &["verify", VOL]);
    assert_eq!(next.code, 0, "killed after {delay_ms} ms: {next:#?}");
    let now = h.names();
    let completed = next.stderr.contains("Completing an interrupted prune");
    assert!(
        now == names || now == names[2..],
        "killed after {delay_ms} ms: {now:?}"
    );
    h.check(&now);
    format!(
        "{delay_ms} ms (kill sent: {killed}): {}",
        match (out.status.success(), now.len(), completed) {
            (true, _, _) => "finished before the kill",
            (_, 1, true) => "interrupted, completed by the next run",
            (_, 1, false) => "finished, killed while closing",
            _ => "killed before the plan was committed: unchanged",
        }
    )
}

#[test]
fn kill_9_of_sparsebak_at_random_moments() {
    let outcomes: Vec<String> = [0u64, 15, 40, 80, 150, 300]
        .into_iter()
        .map(|ms| kill_prune_at(Victim::Sparsebak, 0, ms))
        .collect();
    eprintln!("kill -9 outcomes: {outcomes:#?}");
}

#[test]
fn kill_9_of_the_agent_at_random_moments() {
    let outcomes: Vec<String> = [0u64, 3, 8, 20, 50, 120]
        .into_iter()
        .map(|ms| kill_prune_at(Victim::Agent, 1, ms))
        .collect();
    eprintln!("agent kill -9 outcomes: {outcomes:#?}");
}

#[test]
fn an_interrupted_prune_holds_up_only_its_own_volume() {
    let h = Hist::new(&standard_steps()[..3]);
    let e = &h.e;
    write_file(&e.img("other"), &realistic_bytes(300_000, 8));
    e.ok(&["add", "other"]);
    e.ok(&["send", "-u", "other"]);
    let names = h.names();
    let one = format!("--session={}", names[0]);
    let out = run_env(e, &["prune", VOL, "-u", &one], &[(AGENT_AT, "plan")]);
    assert_ne!(out.code, 0, "{out:#?}");
    let journal = e.meta.join("volumes").join(VOL).join(".prune");
    for args in [
        vec!["verify", "other"],
        vec!["send", "-u", "other"],
        vec!["list", VOL],
    ] {
        let out = e.run(&args);
        assert_eq!(out.code, 0, "{out:#?}");
        assert!(
            !out.stderr.contains("Completing"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(journal.is_dir(), "{args:?} completed the prune of {VOL}");
    }
    // Naming no volume means all of them.
    let out = e.run(&["send", "-u"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out
        .stderr
        .contains("Completing an interrupted prune of volume vm-data"));
    h.check(&names[1..]);
}
