//! `arch-recover` trusts nothing from the destination: each damaged or
//! planted file makes its volume fail with an error naming the volume and
//! session, the other volume is still recovered, the exit code is 1, and
//! nothing outside the new meta dir is written.

use crate::common::*;
use crate::recover_support::*;
use std::fs;
use std::path::{Path, PathBuf};

type Act = Box<dyn Fn(&Path)>;
/// A change to the archive and its undoing.
type Change = (Act, Act);

/// A change to the archive and how to undo it.
struct Case {
    what: &'static str,
    apply: Act,
    undo: Act,
    needles: Vec<String>,
    /// vm-b is still recovered (the damage is elsewhere).
    b_ok: bool,
}

/// Replace a file's bytes; undo puts the original back.
fn rewrite(path: PathBuf, f: impl Fn(Vec<u8>) -> Vec<u8> + 'static) -> Change {
    let orig = fs::read(&path).unwrap();
    let p2 = path.clone();
    let o2 = orig.clone();
    (
        Box::new(move |_| write_file(&path, &f(o2.clone()))),
        Box::new(move |_| {
            let _ = fs::remove_file(&p2);
            write_file(&p2, &orig)
        }),
    )
}

fn json_edit(path: PathBuf, f: impl Fn(&mut serde_json::Value) + 'static) -> Change {
    rewrite(path, move |b| {
        let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    })
}

#[test]
fn damaged_or_planted_metadata_fails_its_volume_only() {
    let w = World::with_steps(&steps()[..3], false);
    let e = &w.e;
    let sb = e.session_names(VB);
    let vb = e.vol_archive_dir(VB);
    let (s1, s2) = (format!("S_{}", sb[1]), format!("S_{}", sb[2]));
    let mut cases = Vec::new();
    let mut case = |what, (apply, undo): Change, needles: &[&str], b_ok| {
        cases.push(Case {
            what,
            apply,
            undo,
            needles: needles.iter().map(|s| s.to_string()).collect(),
            b_ok,
        })
    };
    case(
        "a manifest whose sha256 is not its info.json's",
        rewrite(vb.join(&s1).join("manifest"), |mut b| {
            b[0] = if b[0] == b'0' { b'1' } else { b'0' };
            b
        }),
        &[
            &format!("volume vm-b, session {s1}: the manifest's sha256"),
            "is not the",
        ],
        false,
    );
    case(
        "an info.json with an absurd volume size",
        json_edit(vb.join(&s1).join("info.json"), |v| {
            v["volsize"] = (1u64 << 60).into()
        }),
        &[&format!(
            "volume vm-b, session {s1}: info.json: volume size"
        )],
        false,
    );
    case(
        "an info.json over the size limit",
        rewrite(vb.join(&s2).join("info.json"), |mut b| {
            b.extend(vec![b' '; 70_000]);
            b
        }),
        &[
            &format!("volume vm-b: {s2}/info.json on the destination is"),
            "more than the 65536",
        ],
        false,
    );
    case(
        "a broken previous chain",
        json_edit(vb.join(&s2).join("info.json"), |v| v["previous"] = serde_json::Value::Null),
        &[&format!("volume vm-b, session {s2}: info.json: previous is none, but the session before it is {s1}")],
        false,
    );
    case(
        "an unknown field in info.json",
        json_edit(vb.join(&s1).join("info.json"), |v| {
            v["path"] = "/etc/shadow".into()
        }),
        &[&format!(
            "volume vm-b, session {s1}: info.json: unknown field \"path\""
        )],
        false,
    );
    case(
        "a manifest larger than its chunk count allows",
        rewrite(vb.join(&s2).join("manifest"), |mut b| {
            let again = b.clone();
            for _ in 0..3 {
                b.extend_from_slice(&again);
            }
            b.extend(vec![b'0'; 1000]);
            b
        }),
        &[
            &format!("volume vm-b: {s2}/manifest on the destination is"),
            "more than the",
        ],
        false,
    );
    {
        let m = vb.join(&s1).join("manifest");
        let orig = fs::read(&m).unwrap();
        let target = e
            .vol_archive_dir(VA)
            .join(format!("S_{}", e.session_names(VA)[1]))
            .join("manifest");
        let m2 = m.clone();
        case(
            "a symlink planted as a manifest",
            (
                Box::new(move |_| {
                    fs::remove_file(&m).unwrap();
                    std::os::unix::fs::symlink(&target, &m).unwrap();
                }),
                Box::new(move |_| {
                    fs::remove_file(&m2).unwrap();
                    write_file(&m2, &orig);
                }),
            ),
            &[
                &format!("volume vm-b: cannot fetch {s1}/manifest"),
                "symbolic links",
            ],
            false,
        );
    }
    case(
        "volume.json naming another last session",
        json_edit(vb.join("volume.json"), {
            let s1 = s1.clone();
            move |v| v["last"] = s1.clone().into()
        }),
        &[&format!("volume vm-b: volume.json names {s1} as the last session, but the newest committed session is {s2}")],
        false,
    );
    {
        let bad = e.archive_dir().join("volumes").join("bad name");
        let b2 = bad.clone();
        case(
            "a volume dir whose name is not a volume name",
            (
                Box::new(move |_| fs::create_dir(&bad).unwrap()),
                Box::new(move |_| fs::remove_dir(&b2).unwrap()),
            ),
            &["volume dir \"bad name\" on the destination is not a volume"],
            true,
        );
    }

    let root = e.root();
    for (i, c) in cases.iter().enumerate() {
        (c.apply)(&root);
        let meta = e.path(&format!("meta-{i}"));
        let before = tree(&root, &meta);
        let o = w.recover_into(&meta, &[]);
        assert_eq!(o.code, 1, "{}: {o:#?}", c.what);
        let needles: Vec<&str> = c.needles.iter().map(String::as_str).collect();
        o.expect(1, &needles);
        assert_eq!(
            tree(&root, &meta),
            before,
            "{}: something outside the meta dir changed",
            c.what
        );
        let cfg: serde_json::Value =
            serde_json::from_slice(&fs::read(meta.join("archive.json")).unwrap()).unwrap();
        assert!(
            cfg["volumes"].get(VA).is_some(),
            "{}: vm-a is recovered",
            c.what
        );
        assert_eq!(cfg["volumes"].get(VB).is_some(), c.b_ok, "{}: vm-b", c.what);
        assert_eq!(meta.join("volumes").join(VB).exists(), c.b_ok, "{}", c.what);
        assert!(!meta.join(".recover").exists(), "{}", c.what);
        if i == 0 {
            w.restores_all(&meta, VA);
        }
        (c.undo)(&root);
    }

    // Everything undone: both volumes recover. Then with every volume
    // damaged nothing is kept, so a rerun after repairs starts afresh.
    // Dirs that are not committed sessions are never read, whatever they hold.
    for d in [
        "S_20990101-000000-tmp",
        "S_20990101-000000-orphan",
        "S_20990101-000000-pruned",
        ".prune-plan-tmp",
    ] {
        let p = vb.join(d);
        fs::create_dir(&p).unwrap();
        write_file(&p.join("manifest"), b"garbage");
        write_file(&p.join("info.json"), b"garbage");
    }
    let meta = e.path("meta-clean");
    let o = w.recover_into(&meta, &[]);
    assert_eq!(o.code, 0, "{o:#?}");
    assert!(
        o.stdout.contains("Volume vm-b: fetching 3 session(s)"),
        "{}",
        o.stdout
    );
    let mut listed: Vec<_> = fs::read_dir(meta.join("volumes").join(VB))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    let mut want: Vec<String> = sb.iter().map(|s| format!("S_{s}")).collect();
    want.push("volume.json".into());
    assert_eq!(listed, want);
    w.restores_all(&meta, VB);
    let meta = e.path("meta-none");
    for v in [VA, VB] {
        let p = e.vol_archive_dir(v).join("volume.json");
        fs::write(&p, b"{\"name\":").unwrap();
    }
    let o = w.recover_into(&meta, &[]);
    o.expect(
        1,
        &[
            "volume vm-a: volume.json",
            "volume vm-b: volume.json",
            "2 volume(s) could not be recovered",
        ],
    );
    assert!(o.stdout.contains("Nothing was recovered"), "{}", o.stdout);
    assert!(!meta.join("archive.json").exists());
    assert!(!meta.join("volumes").exists() && !meta.join(".recover").exists());
}
