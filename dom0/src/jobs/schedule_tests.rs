use super::*;
use crate::jobs::systemd::FakeSystemctl;

#[test]
fn intervals_follow_a_strict_grammar() {
    assert_eq!(parse_interval(Job::Monitor, "5min").unwrap(), "5min");
    assert_eq!(parse_interval(Job::Monitor, "2h").unwrap(), "120min");
    for bad in [
        "0min",
        "25h",
        "5",
        "min",
        "5 min",
        "5min\n[Service]",
        "-5min",
        "1441min",
        "5s",
    ] {
        let e = parse_interval(Job::Monitor, bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
    }
    assert_eq!(parse_interval(Job::Send, "weekly").unwrap(), "weekly");
    assert_eq!(
        parse_interval(Job::Send, "03:30").unwrap(),
        "*-*-* 03:30:00"
    );
    assert_eq!(
        parse_interval(Job::Send, "Sun 23:05").unwrap(),
        "Sun *-*-* 23:05:00"
    );
    for bad in [
        "24:00",
        "3:30",
        "03:60",
        "Sunday 03:00",
        "03:30\nExecStart=x",
        "daily ",
        "",
        "*-*-* 03:00",
    ] {
        let e = parse_interval(Job::Send, bad).unwrap_err().to_string();
        assert!(e.starts_with("invalid send schedule"), "{bad:?}: {e}");
    }
}

#[test]
fn set_interval_writes_a_drop_in_reloads_and_restarts_an_active_timer() {
    let d = tempfile::tempdir().unwrap();
    let mut sc = FakeSystemctl::new(d.path());
    sc.props.insert("ActiveState".into(), "active".into());
    assert_eq!(set_interval(&sc, Job::Monitor, "15min").unwrap(), "15min");
    let p = d.path().join("sparsebak-monitor.timer.d").join(DROP_IN);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.ends_with("[Timer]\nOnUnitActiveSec=\nOnUnitActiveSec=15min\n"),
        "{text}"
    );
    assert_eq!(
        sc.calls(),
        [
            "daemon-reload",
            "show -p ActiveState sparsebak-monitor.timer",
            "restart sparsebak-monitor.timer"
        ]
    );
    let i = info(&sc, Job::Monitor).unwrap();
    assert_eq!((i.interval.as_str(), i.overridden), ("15min", true));
    // A refused interval changes nothing.
    assert!(set_interval(&sc, Job::Monitor, "0min").is_err());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    // `default` removes the override.
    assert_eq!(set_interval(&sc, Job::Monitor, "default").unwrap(), "10min");
    assert!(!p.exists());
    let i = info(&sc, Job::Monitor).unwrap();
    assert_eq!((i.interval.as_str(), i.overridden), ("10min", false));
}

#[test]
fn enable_and_disable_start_and_stop_the_timer() {
    let d = tempfile::tempdir().unwrap();
    let mut sc = FakeSystemctl::new(d.path());
    enable(&sc, Job::Send).unwrap();
    disable(&sc, Job::Monitor).unwrap();
    assert_eq!(
        sc.calls(),
        [
            "enable --now sparsebak-send.timer",
            "disable --now sparsebak-monitor.timer"
        ]
    );
    sc.props.insert("UnitFileState".into(), "enabled".into());
    sc.props.insert(
        "NextElapseUSecRealtime".into(),
        "Sun 2026-12-06 00:12:00 UTC".into(),
    );
    let i = info(&sc, Job::Send).unwrap();
    assert_eq!(i.state, "enabled");
    assert_eq!(i.next.as_deref(), Some("Sun 2026-12-06 00:12:00 UTC"));
    assert_eq!(i.interval, "daily");
}
