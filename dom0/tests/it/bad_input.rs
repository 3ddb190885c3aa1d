//! Bad input: each mistake gets a non-zero exit and a message naming the
//! volume, path or session at fault, and the archive still verifies after.

use crate::common::*;

/// An archive with one volume `vol` holding two sessions.
fn archive() -> Env {
    let e = Env::new();
    e.init(&[]);
    write_file(&e.img("vol"), &realistic_bytes(3 * MIB + 333, 30));
    e.ok(&["add", "vol"]);
    e.ok(&["send"]);
    write_at(&e.img("vol"), MIB, &random_bytes(1000, 31));
    e.ok(&["send"]);
    e
}

/// The archive is intact: every session verifies and the latest restores.
fn intact(e: &Env) {
    for n in e.session_names("vol") {
        let s = format!("--session={n}");
        e.ok(&["verify", "vol", &s]);
    }
    assert_eq!(
        e.receive_sha("vol", None, "check.img"),
        sha256_file(&e.img("vol"))
    );
    std::fs::remove_file(e.path("check.img")).unwrap();
}

#[test]
fn unknown_volume_is_named() {
    let e = archive();
    let not = "volume nosuch is not configured (add it with `sparsebak add nosuch`)";
    let save = format!("--save-to={}", e.path("x.img").display());
    for args in [
        vec!["send", "nosuch"],
        vec!["send", "vol", "nosuch"],
        vec!["receive", "nosuch", &save],
        vec!["verify", "nosuch"],
        vec!["list", "nosuch"],
        vec!["list", "nosuch", "--json"],
    ] {
        e.run(&args).expect(1, &[not]);
    }
    e.run(&["delete", "nosuch", "-u"])
        .expect(1, &["volume nosuch is not configured"]);
    assert!(!e.path("x.img").exists());
    assert_eq!(e.session_names("vol").len(), 2, "send vol nosuch sent vol");
    intact(&e);
}

#[test]
fn invalid_volume_names_are_refused_on_add() {
    let e = archive();
    let before = std::fs::read(e.meta.join("archive.json")).unwrap();
    let long = "a".repeat(113);
    for (name, why) in [
        ("a;rm", "only letters, digits and + . _ - are allowed"),
        ("$(x)", "only letters, digits and + . _ - are allowed"),
        ("a b", "only letters, digits and + . _ - are allowed"),
        ("a/b", "only letters, digits and + . _ - are allowed"),
        ("../etc", "only letters, digits and + . _ - are allowed"),
        (".", "'.' and '..' are not volume names"),
        ("..", "'.' and '..' are not volume names"),
        (long.as_str(), "it is longer than 112 characters"),
        ("", "it is empty"),
        ("vm.tick", "the suffixes .tick and .tock are reserved"),
    ] {
        e.run(&["add", name])
            .expect(1, &[&format!("invalid volume name {name:?}: {why}")]);
    }
    // "-x" would be taken for an option; after "--" it is a name, and refused.
    e.run(&["add", "--", "-x"]).expect(
        1,
        &["invalid volume name \"-x\": it must not start with '-'"],
    );
    // 112 characters is the limit, and fine.
    let ok = "b".repeat(112);
    e.ok(&["add", &ok]);
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.meta.join("archive.json")).unwrap()).unwrap();
    let mut expected: serde_json::Value = serde_json::from_slice(&before).unwrap();
    expected["volumes"][&ok] = serde_json::json!({"enabled": true});
    assert_eq!(after, expected, "only the valid name was added");
    assert!(!e.path("etc").exists() && !e.src.join("a;rm").exists());
    intact(&e);
}

#[test]
fn malformed_dest_and_subdir_are_refused() {
    let e = Env::new();
    let sub = "--subdir=x";
    for dest in [
        "/mnt/backup",
        "internal:mnt/backup",
        "internal:/mnt/../etc",
        "internal:",
        "ftp://host/mnt",
        "ssh://host",
        "ssh://-oProxyCommand=x/mnt",
        "ssh://a;b/mnt",
        "ssh://host:99999/mnt",
        "qubes://1vm/mnt",
    ] {
        let d = format!("--dest={dest}");
        e.run(&["arch-init", &d, sub])
            .expect(1, &[&format!("malformed --dest {dest:?}")]);
    }
    let [d, _] = Env::dest_args(&e.dest);
    for (subdir, why) in [
        ("/abs/path", "must be relative to the mountpoint"),
        ("../up", "must not contain '.' or '..'"),
        ("a/../../b", "must not contain '.' or '..'"),
        ("a/./b", "must not contain '.' or '..'"),
    ] {
        let s = format!("--subdir={subdir}");
        e.run(&["arch-init", &d, &s])
            .expect(1, &[&format!("--subdir {subdir:?} {why}")]);
    }
    e.run(&["arch-init"]).expect(1, &["arch-init needs --dest"]);
    e.run(&["arch-init", &d, "--compression=lz4"])
        .expect(1, &["unknown compression \"lz4\""]);
    e.run(&["arch-init", &d, "--chunk-factor=0"]).expect(1, &[]);
    assert!(
        !e.meta.join("archive.json").exists(),
        "a config was written"
    );
    // arch-init options are refused by other commands (a usage error).
    let e = archive();
    e.run(&["send", "--dest=internal:/"])
        .expect(2, &["unexpected argument '--dest'"]);
    intact(&e);
}

/// The configured archive dir is gone: every command that needs the
/// archive says there is no archive there.
#[test]
fn missing_archive_dir_is_reported() {
    let e = archive();
    let moved = e.path("moved-away");
    std::fs::rename(&e.dest, &moved).unwrap();
    std::fs::create_dir(&e.dest).unwrap();
    let where_ = format!("no sparsebak archive at internal:{}", e.dest.display());
    let save = format!("--save-to={}", e.path("r.img").display());
    for args in [
        vec!["send"],
        vec!["verify", "vol"],
        vec!["receive", "vol", &save],
        vec!["delete", "vol", "-u"],
    ] {
        e.run(&args)
            .expect(1, &[&where_, "is the right disk mounted?"]);
    }
    assert!(!e.path("r.img").exists());
    assert!(
        std::fs::read_dir(&e.dest).unwrap().next().is_none(),
        "something was written into the empty destination"
    );
    // Local state is untouched: list still shows both sessions.
    assert_eq!(e.session_names("vol").len(), 2);
    assert!(e.config()["volumes"].get("vol").is_some());
    std::fs::remove_dir(&e.dest).unwrap();
    std::fs::rename(&moved, &e.dest).unwrap();
    intact(&e);
}

#[test]
fn arch_init_refuses_to_replace_a_config_or_an_archive() {
    let e = archive();
    let uuid = e.config()["uuid"].clone();
    let [d, s] = Env::dest_args(&e.dest);
    e.run(&["arch-init", &d, &s]).expect(
        1,
        &[&format!(
            "an archive is already configured in {}",
            e.meta.display()
        )],
    );
    // Another dom0 (a fresh meta dir) pointed at the same destination.
    let fresh = e.path("fresh-meta");
    let o = e.run_with(&["arch-init", &d, &s], &fresh);
    o.expect(
        1,
        &[&format!(
            "an archive already exists at internal:{}; refusing to overwrite it",
            e.dest.display()
        )],
    );
    assert!(!fresh.join("archive.json").exists());
    assert_eq!(e.config()["uuid"], uuid);
    let header: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.archive_dir().join("archive.json")).unwrap())
            .unwrap();
    assert_eq!(header["uuid"], uuid);
    intact(&e);
}

/// --dest names a plain directory, not a mount point.
#[test]
fn destination_that_is_not_a_mount_point() {
    let e = Env::new();
    let plain = e.path("plain");
    std::fs::create_dir(&plain).unwrap();
    let d = format!("--dest=internal:{}", plain.display());
    e.run(&["arch-init", &d, "--subdir=bk"]).expect(
        1,
        &[&format!(
            "{} is not a mounted file system: mount the backup disk there, or fix --dest",
            plain.display()
        )],
    );
    assert!(!e.meta.join("archive.json").exists());
    assert!(
        !plain.join("bk").exists(),
        "wrote under an unmounted mountpoint"
    );
    // A mountpoint that does not exist at all.
    let d = format!("--dest=internal:{}", e.path("nowhere").display());
    e.run(&["arch-init", &d]).expect(
        1,
        &[&format!(
            "mountpoint {} is not available",
            e.path("nowhere").display()
        )],
    );
}

/// The backup disk is unmounted after the archive was made on it (a bind
/// mount stands in for the disk, so its content survives the unmount).
#[test]
fn destination_disk_not_mounted() {
    if !have_root("destination_disk_not_mounted") {
        return;
    }
    let e = Env::new();
    let disk = e.path("disk");
    std::fs::create_dir(&disk).unwrap();
    let mnt = e.path("mnt");
    let m = Mount::bind(&disk, &mnt);
    let d = format!("--dest=internal:{}", mnt.display());
    let src = format!("--source={}", e.src.display());
    e.ok(&["arch-init", &d, "--subdir=bk", &src, "--encrypt=off"]);
    write_file(&e.img("vol"), &realistic_bytes(2 * MIB + 5, 33));
    e.ok(&["add", "vol"]);
    e.ok(&["send"]);
    drop(m);
    let msg = format!(
        "{} is not a mounted file system: mount the backup disk there, or fix --dest",
        mnt.display()
    );
    let save = format!("--save-to={}", e.path("r.img").display());
    for args in [
        vec!["send"],
        vec!["verify", "vol"],
        vec!["receive", "vol", &save],
    ] {
        e.run(&args).expect(1, &[&msg]);
    }
    assert!(!mnt.join("bk").exists(), "wrote into the bare mountpoint");
    // An empty disk mounted there: no archive there.
    let empty = e.path("empty-disk");
    std::fs::create_dir(&empty).unwrap();
    let m = Mount::bind(&empty, &mnt);
    e.run(&["send"]).expect(
        1,
        &[&format!(
            "no sparsebak archive at internal:{}/bk",
            mnt.display()
        )],
    );
    drop(m);
    let _m = Mount::bind(&disk, &mnt);
    e.verify_ok("vol");
    assert_eq!(
        e.receive_sha("vol", None, "r.img"),
        sha256_file(&e.img("vol"))
    );
}

#[test]
fn nonexistent_and_malformed_sessions() {
    let e = archive();
    let names = e.session_names("vol");
    let save = format!("--save-to={}", e.path("r.img").display());
    let missing = format!(
        "session S_20000101-000000 does not exist for volume vol (it has 2 sessions, S_{} to S_{})",
        names[0], names[1]
    );
    e.run(&["receive", "vol", &save, "--session=20000101-000000"])
        .expect(1, &[&missing]);
    e.run(&["verify", "vol", "--session=20000101-000000"])
        .expect(1, &[&missing]);
    for bad in ["2020-01-01", "20201301-000000", "yesterday", "S_2020", ""] {
        let s = format!("--session={bad}");
        e.run(&["receive", "vol", &save, &s]).expect(
            1,
            &[&format!("--session {bad:?}: expected YYYYMMDD-HHMMSS")],
        );
        e.run(&["verify", "vol", &s]).expect(
            1,
            &[&format!("--session {bad:?}: expected YYYYMMDD-HHMMSS")],
        );
    }
    for range in [
        format!("{},{}", names[0], names[1]),
        format!("{},", names[0]),
    ] {
        let s = format!("--session={range}");
        for cmd in ["receive", "verify"] {
            // --save-to is receive's option only.
            let args: Vec<&str> = match cmd {
                "receive" => vec![cmd, "vol", &save, &s],
                _ => vec![cmd, "vol", &s],
            };
            e.run(&args)
                .expect(1, &[&format!("{cmd} takes one session, not a range")]);
        }
    }
    e.run(&["diff", "vol", &format!("--session={}", names[0])])
        .expect(1, &["diff always compares with the latest session"]);
    assert!(!e.path("r.img").exists());
    // The `S_` spelling of a session name is accepted as well.
    let s = format!("--session=S_{}", names[0]);
    e.ok(&["verify", "vol", &s]);
    intact(&e);
}

#[test]
fn second_instance_is_refused_while_the_lock_is_held() {
    let e = archive();
    let lock = HeldLock::new(&e.meta.join("lock"));
    let msg = format!(
        "sparsebak is already running (lock {} is held)",
        e.meta.join("lock").display()
    );
    let save = format!("--save-to={}", e.path("r.img").display());
    for args in [
        vec!["send"],
        vec!["list"],
        vec!["verify", "vol"],
        vec!["receive", "vol", &save],
        vec!["add", "other"],
        vec!["delete", "vol", "-u"],
        vec!["arch-init", "--dest=internal:/"],
    ] {
        e.run(&args).expect(1, &[&msg]);
    }
    // --wait gives up after its time, naming the lock; without it, the
    // message says how to wait.
    let t = std::time::Instant::now();
    e.run(&["list", "--wait=1"]).expect(1, &[&msg]);
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    e.run(&["list"]).expect(1, &["--wait=SECONDS waits for it"]);
    // A run with --wait proceeds as soon as the holder lets go.
    let meta = e.meta.clone();
    let waiter =
        std::thread::spawn(move || run_sparsebak(&["verify", "vol", "--wait=60"], &meta, &[]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(lock);
    let o = waiter.join().unwrap();
    assert_eq!(
        o.code, 0,
        "verify --wait after the lock was released: {o:#?}"
    );
    assert!(o.stderr.contains("waiting up to 60s"), "{o:#?}");
    assert!(e.config()["volumes"].get("other").is_none());
    intact(&e);
}

#[test]
fn bad_receive_targets() {
    let e = archive();
    e.run(&["receive", "vol"])
        .expect(1, &["receive needs --save-to=PATH"]);
    let dir = e.path("a-dir");
    std::fs::create_dir(&dir).unwrap();
    let save = format!("--save-to={}", dir.display());
    e.run(&["receive", "vol", &save, "-u"]).expect(
        1,
        &[&format!(
            "--save-to {} is neither a regular file nor a block device",
            dir.display()
        )],
    );
    let save = format!("--save-to={}", e.path("no-such-dir/x.img").display());
    e.run(&["receive", "vol", &save, "-u"]).expect(
        1,
        &[&format!(
            "cannot create {}",
            e.path("no-such-dir").display()
        )],
    );
    // An existing file is only replaced after confirmation.
    let file = e.path("existing.img");
    write_file(&file, b"keep me");
    let save = format!("--save-to={}", file.display());
    e.run(&["receive", "vol", &save]).expect(
        1,
        &[&format!(
            "This will erase all existing data in {}",
            file.display()
        )],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    intact(&e);
}
