//! Format 2, encrypted archives, end to end through the real binaries:
//! every session restores equal to its source, nothing readable reaches
//! the destination (names, content, manifests), and every kind of bad input
//! (wrong passphrase, missing or damaged keys, bit flips in each kind of
//! stored file, swapped, truncated, oversized or symlinked files) is
//! refused with a clear error, a non-zero exit and nothing written to the
//! restore target (docs/FORMAT.md §18).

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const VA: &str = "vm-secret-private";
const VB: &str = "vm-other-root";
const MARK: &[u8] = b"TOP-SECRET-MARKER ";
/// Tiny Argon2id parameters for new wraps (test builds only), so a test
/// does not spend 256 MiB and a second per arch-init.
const FAST: &[(&str, &str)] = &[("SPARSEBAK_TEST_FAST_KDF", "1")];

fn run(e: &Env, args: &[&str]) -> Out {
    run_sparsebak(args, &e.meta, FAST)
}

fn ok(e: &Env, args: &[&str]) -> String {
    let o = run(e, args);
    assert_eq!(o.code, 0, "`sparsebak {}` failed: {o:#?}", args.join(" "));
    o.stdout
}

fn pass_file(e: &Env, name: &str, pass: &str) -> String {
    let p = e.path(name);
    std::fs::write(&p, format!("{pass}\n")).unwrap();
    format!("--passphrase-file={}", p.display())
}

/// Compressible data full of a marker, with some random chunks.
fn secret_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut v: Vec<u8> = MARK.iter().copied().cycle().take(len as usize).collect();
    let r = random_bytes(len / 3, seed);
    v[len as usize / 3..len as usize / 3 + r.len()].copy_from_slice(&r);
    v
}

/// An encrypted archive with two volumes; VA has two sessions. Returns the
/// env and the sha256 of VA at each session.
fn archive() -> (Env, Vec<String>) {
    let e = Env::new();
    let [d, s] = Env::dest_args(&e.dest);
    let src = format!("--source=dir:{}", e.src.display());
    let p = pass_file(&e, "pass", "correct horse battery");
    let out = ok(&e, &["arch-init", &d, &s, &src, &p]);
    assert!(out.contains("encrypted;"), "{out}");
    write_file(&e.img(VA), &secret_bytes(3 * MIB + 999, 1));
    write_file(&e.img(VB), &secret_bytes(MIB, 2));
    ok(&e, &["add", VA]);
    ok(&e, &["add", VB]);
    ok(&e, &["send"]);
    let mut shas = vec![sha256_file(&e.img(VA))];
    write_at(&e.img(VA), 5 * CHUNK + 3, &random_bytes(3 * CHUNK, 3));
    set_len(&e.img(VA), 4 * MIB + 5);
    ok(&e, &["send", VA]);
    shas.push(sha256_file(&e.img(VA)));
    (e, shas)
}

fn hidden_dir(e: &Env, not: &[&Path]) -> PathBuf {
    let vols = e.archive_dir().join("volumes");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&vols)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .filter(|p| !not.contains(&p.as_path()))
        .collect();
    dirs.sort();
    dirs.remove(0)
}

/// The destination dir of VA: the one holding two sessions.
fn va_dir(e: &Env) -> PathBuf {
    let vols = e.archive_dir().join("volumes");
    std::fs::read_dir(&vols)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .find(|p| sessions_in(p).len() == 2)
        .expect("VA's dir")
}

fn sessions_in(vdir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(vdir)
        .unwrap()
        .flatten()
        .map(|d| d.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("S_"))
        .collect();
    s.sort();
    s
}

fn chunks_in(sdir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(sdir).unwrap().flatten() {
        if d.path().is_dir() {
            out.extend(
                std::fs::read_dir(d.path())
                    .unwrap()
                    .flatten()
                    .map(|f| f.path()),
            );
        }
    }
    out.sort();
    out
}

fn every_file(dir: &Path, out: &mut Vec<PathBuf>) {
    for d in std::fs::read_dir(dir).unwrap().flatten() {
        let p = d.path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn flip(p: &Path, at: usize) {
    let mut b = std::fs::read(p).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x04;
    std::fs::write(p, b).unwrap();
}

/// `receive VA` fails with `needles` and leaves no restore file behind.
fn receive_refused(e: &Env, needles: &[&str]) {
    let target = e.path("restore.img");
    let save = format!("--save-to={}", target.display());
    run(e, &["receive", VA, &save]).expect(1, needles);
    let left: Vec<_> = std::fs::read_dir(e.root())
        .unwrap()
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(left.is_empty(), "receive left {left:?} behind");
}

#[test]
fn every_session_restores_and_the_destination_learns_no_names_or_content() {
    let (e, shas) = archive();
    let names = e.session_names(VA);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            e.receive_sha(VA, Some(n), &format!("r{i}.img")),
            shas[i],
            "session {n}"
        );
    }
    assert_eq!(e.receive_sha(VB, None, "rb.img"), sha256_file(&e.img(VB)));
    e.verify_ok(VA);
    e.verify_ok(VB);
    ok(&e, &["diff", VA]);
    let out = ok(&e, &["arch-check", "--data"]);
    assert!(out.contains("no problems"), "{out}");
    // The destination: format 2 header with the wrapped key, hidden dirs,
    // every metadata file sealed, no marker or name anywhere.
    let h: serde_json::Value =
        serde_json::from_slice(&std::fs::read(e.archive_dir().join("archive.json")).unwrap())
            .unwrap();
    assert_eq!(h["format_version"], 2);
    assert_eq!(h["encryption"], "xchacha20poly1305");
    assert_eq!(h["key"]["kdf"], "argon2id");
    let mut files = Vec::new();
    every_file(&e.archive_dir(), &mut files);
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        let rel = f.strip_prefix(e.archive_dir()).unwrap().to_string_lossy();
        assert!(
            !rel.contains("vm-"),
            "a real name on the destination: {rel}"
        );
        let b = std::fs::read(f).unwrap();
        for needle in [
            &MARK[..12],
            VA.as_bytes(),
            VB.as_bytes(),
            &shas[0].as_bytes()[..16],
        ] {
            assert!(
                !b.windows(needle.len()).any(|w| w == needle),
                "{rel} holds {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        let name = f.file_name().unwrap().to_string_lossy();
        if ["manifest", "info.json", "volume.json"].contains(&name.as_ref()) {
            assert!(b.starts_with(b"sparsebak-sealed 2 "), "{rel} is not sealed");
        }
    }
    let key = e.meta.join("archive.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Local manifests stay plain (dom0 is trusted) but hold keyed digests.
    let local = std::fs::read_to_string(
        e.meta
            .join("volumes")
            .join(VA)
            .join(format!("S_{}", names[0]))
            .join("manifest"),
    )
    .unwrap();
    let zero_sha = sha256(&vec![0u8; CHUNK as usize]);
    assert!(!local.contains(&zero_sha[..20]));
    // Deduplication cannot link chunks bound to their address: refused.
    run(&e, &["send", "--dedup"]).expect(1, &["encrypted archives are not deduplicated"]);
    run(&e, &["-u", "arch-deduplicate"]).expect(1, &["encrypted archives are not deduplicated"]);
}

#[test]
fn prune_recover_and_passwd_keep_every_session_restorable() {
    let (e, shas) = archive();
    write_at(&e.img(VA), 7, &random_bytes(CHUNK, 9));
    ok(&e, &["send", VA]);
    let last = sha256_file(&e.img(VA));
    let names = e.session_names(VA);
    ok(&e, &["-u", "prune", VA, &format!("--session={}", names[1])]);
    assert_eq!(
        e.session_names(VA),
        vec![names[0].clone(), names[2].clone()]
    );
    assert_eq!(e.receive_sha(VA, Some(&names[0]), "p0.img"), shas[0]);
    assert_eq!(e.receive_sha(VA, None, "p2.img"), last);
    // A new passphrase: the data files are not touched.
    let mut before = Vec::new();
    every_file(&e.archive_dir().join("volumes"), &mut before);
    let sums: Vec<String> = before.iter().map(|f| sha256_file(f)).collect();
    let new = pass_file(&e, "pass2", "new passphrase");
    ok(&e, &["arch-passwd", &new]);
    let after: Vec<String> = before.iter().map(|f| sha256_file(f)).collect();
    assert_eq!(sums, after, "arch-passwd rewrote data");
    // A fresh dom0: the old passphrase no longer opens it, the new one does.
    let fresh = e.path("fresh-meta");
    let [d, s] = Env::dest_args(&e.dest);
    let old = pass_file(&e, "pass", "correct horse battery");
    run_sparsebak(&["arch-recover", &d, &s, &old], &fresh, &[]).expect(
        1,
        &["cannot unwrap the archive key: wrong passphrase, or the wrapped key was altered"],
    );
    assert!(!fresh.join("archive.json").exists() && !fresh.join("archive.key").exists());
    let o = run_sparsebak(&["arch-recover", &d, &s, &new], &fresh, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(
        std::fs::read(fresh.join("archive.key")).unwrap(),
        std::fs::read(e.meta.join("archive.key")).unwrap()
    );
    let target = e.path("rec.img");
    let save = format!("--save-to={}", target.display());
    let o = run_sparsebak(&["receive", VA, &save], &fresh, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert_eq!(sha256_file(&target), last);
    let o = run_sparsebak(&["verify", VB], &fresh, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
}

#[test]
fn missing_or_damaged_keys_are_refused_by_name() {
    let (e, _) = archive();
    let key = e.meta.join("archive.key");
    let good = std::fs::read(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    run(&e, &["send"]).expect(1, &["can be read by others (mode 644)", "chmod 600"]);
    std::fs::remove_file(&key).unwrap();
    run(&e, &["verify", VA]).expect(1, &["its key file", "is missing"]);
    receive_refused(&e, &["is missing"]);
    let mut other = good.clone();
    let i = other.len() - 5;
    other[i] = if other[i] == b'0' { b'1' } else { b'0' };
    std::fs::write(&key, &other).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(&e, &["send"]).expect(1, &["fails its authentication check"]);
    std::fs::write(&key, &good).unwrap();
    e.verify_ok(VA);
    // The destination's header: altered, or its wrapped key removed.
    let hp = e.archive_dir().join("archive.json");
    let header = std::fs::read_to_string(&hp).unwrap();
    std::fs::write(&hp, header.replace("\"level\":3", "\"level\":4")).unwrap();
    run(&e, &["send"]).expect(
        1,
        &["the archive header at", "fails its authentication check"],
    );
    receive_refused(&e, &["fails its authentication check"]);
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    v.as_object_mut().unwrap().remove("key");
    std::fs::write(&hp, v.to_string()).unwrap();
    run(&e, &["verify", VA]).expect(1, &["without its wrapped key or mac"]);
    let fresh = e.path("fresh-meta");
    let [d, s] = Env::dest_args(&e.dest);
    let p = pass_file(&e, "pass", "correct horse battery");
    run_sparsebak(&["arch-recover", &d, &s, &p], &fresh, &[])
        .expect(1, &["without its wrapped key or mac"]);
    // A wrapped key with one digit changed: no passphrase opens it.
    let mut v: serde_json::Value = serde_json::from_str(&header).unwrap();
    let w = v["key"]["wrapped"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if w.starts_with('0') { "1" } else { "0" }, &w[1..]);
    v["key"]["wrapped"] = flipped.into();
    std::fs::write(&hp, v.to_string()).unwrap();
    run_sparsebak(&["arch-recover", &d, &s, &p], &fresh, &[])
        .expect(1, &["wrong passphrase, or the wrapped key was altered"]);
    assert!(!fresh.join("archive.json").exists());
    // An unencrypted archive where this dom0 keeps a key: refused.
    v.as_object_mut().unwrap().remove("key");
    v.as_object_mut().unwrap().remove("mac");
    v["format_version"] = 1.into();
    v["encryption"] = "none".into();
    std::fs::write(&hp, v.to_string()).unwrap();
    run(&e, &["send"]).expect(
        1,
        &["is not encrypted, but this configuration's archive is"],
    );
    std::fs::write(&hp, &header).unwrap();
    e.verify_ok(VA);
}

#[test]
fn bit_flips_in_each_kind_of_stored_file_are_refused() {
    let (e, _) = archive();
    let vdir = va_dir(&e);
    let s1 = sessions_in(&vdir)[1].clone();
    // A chunk: verify names it (exit 3), receive writes nothing.
    let victim = chunks_in(&s1)[0].clone();
    let good = std::fs::read(&victim).unwrap();
    // Header, nonce, ciphertext, tag: each caught by its own check, and
    // the ciphertext only by authentication (it is not hashed).
    for (at, why) in [
        (3, "unsupported version/encryption"),
        (4, "authentication failed"),
        (9, "declares 66560 bytes but 65536 were expected"),
        (20, "hash mismatch"),
        (good.len() / 2, "authentication failed: the chunk file"),
        (good.len() - 1, "hash mismatch"),
    ] {
        flip(&victim, at);
        let chunk = format!("chunk 0x{:x} of {VA} from S_", chunk_addr(&victim));
        run(&e, &["verify", VA]).expect(3, &[&chunk, why, "FAILED: 1 bad chunk(s)"]);
        receive_refused(&e, &[&chunk, why]);
        std::fs::write(&victim, &good).unwrap();
    }
    e.verify_ok(VA);
    // The sealed metadata is what a fresh dom0 recovers from: each flip
    // fails that volume's recovery, naming it, and recovers nothing of it.
    let [d, s] = Env::dest_args(&e.dest);
    let p = pass_file(&e, "pass", "correct horse battery");
    let files = [
        vdir.join("volume.json"),
        s1.join("info.json"),
        s1.join("manifest"),
    ];
    for (i, f) in files.iter().enumerate() {
        let good = std::fs::read(f).unwrap();
        for at in [30, good.len() - 3] {
            flip(f, at);
            // arch-check finds it by volume and session (exit 3).
            run(&e, &["arch-check"]).expect(3, &[&format!("volume {VA}")]);
            let fresh = e.path(&format!("fresh-{i}-{at}"));
            let o = run_sparsebak(&["arch-recover", &d, &s, &p], &fresh, &[]);
            o.expect(1, &[vdir.file_name().unwrap().to_str().unwrap()]);
            assert!(
                o.stderr.contains("authentication failed")
                    || o.stderr.contains("not a sealed")
                    || o.stderr.contains("not base64")
                    || o.stderr.contains("bad nonce"),
                "{o:#?}"
            );
            assert!(!fresh.join("volumes").join(VA).exists());
            std::fs::write(f, &good).unwrap();
        }
    }
    let fresh = e.path("fresh-ok");
    let o = run_sparsebak(&["arch-recover", &d, &s, &p], &fresh, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
}

#[test]
fn swapped_truncated_oversized_and_symlinked_chunks_are_refused() {
    let (e, _) = archive();
    let vdir = va_dir(&e);
    let ss = sessions_in(&vdir);
    let c0 = chunks_in(&ss[0]);
    let c1 = chunks_in(&ss[1]);
    let b_dir = hidden_dir(&e, &[&vdir]);
    let cb = chunks_in(&sessions_in(&b_dir)[0]);
    let keep: Vec<(PathBuf, Vec<u8>)> = c0
        .iter()
        .chain(&c1)
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    let restore = || {
        for (p, b) in &keep {
            let _ = std::fs::remove_file(p);
            std::fs::write(p, b).unwrap();
        }
    };
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Damage)> = vec![
        (
            "within a session",
            Box::new(|| std::fs::copy(&c1[1], &c1[0]).map(|_| ()).unwrap()),
        ),
        (
            "across sessions (same address)",
            Box::new(|| {
                let same = c0
                    .iter()
                    .find(|p| p.file_name() == c1[0].file_name())
                    .unwrap();
                std::fs::copy(same, &c1[0]).unwrap();
            }),
        ),
        (
            "across volumes",
            Box::new(|| std::fs::copy(&cb[0], &c1[0]).map(|_| ()).unwrap()),
        ),
        ("truncated", Box::new(|| set_len(&c1[0], 40))),
        ("oversized", Box::new(|| set_len(&c1[0], 2 * CHUNK))),
    ];
    for (what, damage) in cases {
        damage();
        let v = run(&e, &["verify", VA]);
        assert_eq!(v.code, 3, "{what}: {v:#?}");
        assert!(
            v.stderr.contains(&format!("of {VA} from S_")),
            "{what}: {v:#?}"
        );
        receive_refused(&e, &[VA]);
        restore();
    }
    std::fs::remove_file(&c1[0]).unwrap();
    std::os::unix::fs::symlink(&c0[0], &c1[0]).unwrap();
    run(&e, &["verify", VA]).expect(3, &[&format!("of {VA} from S_")]);
    receive_refused(&e, &[VA]);
    restore();
    e.verify_ok(VA);
}

fn copy_tree(from: &Path, to: &Path) {
    let o = std::process::Command::new("cp")
        .args(["-a", &from.to_string_lossy(), &to.to_string_lossy()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// The sealed info.json and volume.json seal again to the same bytes on
/// dom0, so the consistency check (§17) catches an older copy of a
/// session or of the whole archive in format 2 as in format 1.
#[test]
fn an_older_copy_of_the_archive_or_of_a_session_is_refused() {
    let (e, _) = archive();
    let vdir = va_dir(&e);
    let old = e.path("old-archive");
    copy_tree(&e.archive_dir(), &old);
    write_at(&e.img(VA), 0, &random_bytes(CHUNK, 77));
    ok(&e, &["send", VA]);
    let names = e.session_names(VA);
    // A prune rewrites the target's info.json: keep the pre-prune copy.
    let target = vdir.join(format!("S_{}", names[2]));
    let (old_target, new_target) = (e.path("old-target"), e.path("new-target"));
    copy_tree(&target, &old_target);
    ok(&e, &["-u", "prune", VA, &format!("--session={}", names[1])]);
    std::fs::rename(&target, &new_target).unwrap();
    copy_tree(&old_target, &target);
    run(&e, &["send", VA]).expect(
        1,
        &[&format!("volume {VA}, session "), "differs from dom0's"],
    );
    receive_refused(&e, &["differs from dom0's"]);
    std::fs::remove_dir_all(&target).unwrap();
    std::fs::rename(&new_target, &target).unwrap();
    e.verify_ok(VA);
    // The whole archive replaced by its older copy.
    let live = e.path("live-archive");
    std::fs::rename(e.archive_dir(), &live).unwrap();
    copy_tree(&old, &e.archive_dir());
    run(&e, &["send", VA]).expect(1, &[&format!("volume {VA}, session "), "rolled back"]);
    receive_refused(&e, &["rolled back"]);
    std::fs::remove_dir_all(e.archive_dir()).unwrap();
    std::fs::rename(&live, e.archive_dir()).unwrap();
    e.verify_ok(VA);
}
