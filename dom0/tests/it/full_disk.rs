//! A full destination disk (a small tmpfs): send fails with "destination is
//! full", records nothing, loses nothing, and a later send succeeds once
//! there is room.

use crate::common::*;

/// An archive on a tmpfs of `size` mounted in the env's temp dir.
fn on_tmpfs(e: &Env, size: &str) -> Mount {
    let m = Mount::tmpfs(&e.path("mnt"), size);
    let d = format!("--dest=internal:{}", m.0.display());
    let src = format!("--source=dir:{}", e.src.display());
    e.ok(&["arch-init", &d, "--subdir=archive", &src, "--encrypt=off"]);
    m
}

fn no_tmp_dirs(e: &Env, m: &Mount, vol: &str) {
    for d in [
        m.0.join("archive/sparsebak/volumes").join(vol),
        e.meta.join("volumes").join(vol),
    ] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            let tmp: Vec<_> = rd
                .flatten()
                .map(|x| x.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("-tmp"))
                .collect();
            assert!(tmp.is_empty(), "{} keeps {tmp:?}", d.display());
        }
    }
}

#[test]
fn full_send_onto_a_full_disk() {
    if !have_root("full_send_onto_a_full_disk") {
        return;
    }
    let e = Env::new();
    let m = on_tmpfs(&e, "3m");
    write_file(&e.img("big"), &random_bytes(16 * MIB, 50));
    e.ok(&["add", "big"]);
    let list_before = e.ok(&["list", "--json"]);
    let o = e.run(&["send", "-u"]);
    o.expect(
        1,
        &[
            "send of volume big failed; the previous sessions are intact",
            "destination is full",
            &format!("{}/archive/sparsebak/volumes/big/S_", m.0.display()),
        ],
    );
    assert_eq!(
        e.ok(&["list", "--json"]),
        list_before,
        "a session was recorded"
    );
    assert!(e.sessions("big").is_empty());
    // volume.json may exist (the volume's identity is saved before the first
    // send), but it must name no session.
    if let Ok(v) = std::fs::read_to_string(e.meta.join("volumes/big/volume.json")) {
        assert!(v.contains("\"last\": null"), "{v}");
    }
    no_tmp_dirs(&e, &m, "big");

    m.resize("64m");
    let out = e.ok(&["send", "-u"]);
    assert!(out.contains("Volume big: full session"), "{out}");
    e.verify_ok("big");
    assert_eq!(
        e.receive_sha("big", None, "r.img"),
        sha256_file(&e.img("big"))
    );
}

#[test]
fn incremental_send_onto_a_full_disk() {
    if !have_root("incremental_send_onto_a_full_disk") {
        return;
    }
    let e = Env::new();
    let m = on_tmpfs(&e, "3m");
    let img = e.img("vol");
    write_file(&img, &realistic_bytes(2 * MIB + 100, 51));
    e.ok(&["add", "vol"]);
    e.ok(&["send", "-u"]);
    let first_sha = sha256_file(&img);
    let first = e.session_names("vol");
    assert_eq!(first.len(), 1);

    // Grow by 16 MiB of random data: far more than the disk holds.
    set_len(&img, 2 * MIB + 100 + 16 * MIB);
    write_at(&img, 2 * MIB + 100, &random_bytes(16 * MIB, 52));
    e.run(&["send", "-u"]).expect(
        1,
        &[
            "send of volume vol failed; the previous sessions are intact",
            "destination is full",
        ],
    );
    assert_eq!(
        e.session_names("vol"),
        first,
        "a failed session was recorded"
    );
    no_tmp_dirs(&e, &m, "vol");
    let s = format!("--session={}", first[0]);
    e.ok(&["verify", "vol", &s]);
    assert_eq!(e.receive_sha("vol", Some(&first[0]), "old.img"), first_sha);
    std::fs::remove_file(e.path("old.img")).unwrap();

    // Room again: the incremental send goes through and both sessions restore.
    m.resize("64m");
    let out = e.ok(&["send", "-u"]);
    assert!(out.contains("Volume vol: incremental session"), "{out}");
    let names = e.session_names("vol");
    assert_eq!(names.len(), 2);
    assert_eq!(e.receive_sha("vol", Some(&names[0]), "a.img"), first_sha);
    assert_eq!(
        e.receive_sha("vol", Some(&names[1]), "b.img"),
        sha256_file(&img)
    );
}
