//! Hostile `PutSession` tar streams. Every member that is not a file the
//! layout could have produced is refused; the error says which member; the
//! session's `-tmp` dir is removed; nothing is written anywhere else; and the
//! archive still takes a valid session afterwards.

use crate::support::*;
// Requests as the wire carries them: names are strings, valid or not.
use sparsebak_common::proto::{ErrorKind, RawRequest as Request, Response};
use tar::EntryType;

/// Path from a session's `-tmp` dir to the fixture root:
/// `S_…-tmp` → `vol1` → `volumes` → `sparsebak` → `dest` → root.
const UP_TO_ROOT: &str = "../../../../..";

/// Send the tar stream `build(&fixture)` as session S1 of VOL to a fresh
/// archive and expect a `kind` refusal naming `needle`. Returns the message.
fn refused(build: impl FnOnce(&Fixture) -> Vec<u8>, kind: ErrorKind, needle: &str) -> String {
    let fx = Fixture::new();
    let data = build(&fx);
    let before = fx.snapshot();
    let mut ag = fx.agent(true);
    let msg = expect_error(ag.put(VOL, S1, None, data), kind);
    assert!(
        msg.starts_with(&format!("storing {S1} of {VOL}: ")),
        "message does not say what was being stored: {msg:?}"
    );
    assert_names(&msg, needle);
    assert_eq!(
        ag.finish(),
        Err(msg.clone()),
        "a refused stream ends the agent's session"
    );
    assert!(
        !fx.tmp_dir(VOL, S1).exists(),
        "the -tmp dir was left behind"
    );
    fx.assert_unchanged(&before, &[fx.vol_dir(VOL)]);

    let mut ag = fx.agent(true);
    let listed = ag.call(&Request::ListSessions { vol: VOL.into() });
    assert_eq!(
        listed,
        Response::Sessions {
            committed: vec![],
            in_progress: vec![]
        }
    );
    ag.bye();
    fx.commit_session(S1, None);
    msg
}

fn chunk(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A tar that starts with one good chunk, so the refusal happens with data
/// already in the `-tmp` dir.
fn with_good_chunk() -> Tar {
    Tar::new().file(&chunk_path(0), &chunk(1000))
}

/// Chunks, manifest and info.json after the hostile part.
fn and_rest(t: Tar) -> Vec<u8> {
    t.file(&chunk_path(0x7000_0000), &chunk(10))
        .file("manifest", b"m\n")
        .file("info.json", b"{}")
        .finish()
}

fn one_member(name: &str) -> impl FnOnce(&Fixture) -> Vec<u8> + '_ {
    move |_| and_rest(with_good_chunk().file(name, &chunk(100)))
}

#[test]
fn valid_stream_is_stored_and_fixture_is_sound() {
    let fx = Fixture::new();
    let s = fx.commit_session(S1, None);
    let sdir = fx.vol_dir(VOL).join(S1);
    for (a, d) in &s.chunks {
        assert_eq!(&std::fs::read(sdir.join(chunk_path(*a))).unwrap(), d);
    }
    assert_eq!(std::fs::read(sdir.join("manifest")).unwrap(), s.manifest);
    assert_eq!(std::fs::read(sdir.join("info.json")).unwrap(), s.info);
    assert!(!fx.tmp_dir(VOL, S1).exists());
}

#[test]
fn absolute_member_path() {
    let mut target = String::new();
    let msg = refused(
        |fx| {
            target = format!("{}/evil", fx.outside.display());
            and_rest(with_good_chunk().file(&target, b"pwned"))
        },
        ErrorKind::Invalid,
        "/outside/evil",
    );
    assert_names(&msg, "tar member refused");
    assert_names(&msg, &target);
}

#[test]
fn dotdot_escape() {
    let name = format!("{UP_TO_ROOT}/outside/evil");
    refused(one_member(&name), ErrorKind::Invalid, &name);
    refused(
        one_member("../x0000000000000000"),
        ErrorKind::Invalid,
        "../x0000000000000000",
    );
}

#[test]
fn dotdot_inside_a_chunk_path() {
    refused(
        one_member("000000000/../../x"),
        ErrorKind::Invalid,
        "000000000/../../x",
    );
    let deep = format!("000000000/../{UP_TO_ROOT}/outside/x0000000000000000");
    refused(one_member(&deep), ErrorKind::Invalid, &deep);
    refused(
        one_member("000000000/./x0000000000000000"),
        ErrorKind::Invalid,
        "000000000/./x0000000000000000",
    );
}

fn special(
    kind: EntryType,
    edit: impl FnOnce(&mut tar::Header, &Fixture),
) -> impl FnOnce(&Fixture) -> Vec<u8> {
    move |fx| {
        let h = header(chunk_path(0x10000).as_bytes(), kind, 0, |h| edit(h, fx));
        and_rest(with_good_chunk().member(&h, &[]))
    }
}

fn set_link(h: &mut tar::Header, target: &str) {
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
}

#[test]
fn symlink_member() {
    let msg = refused(
        special(EntryType::Symlink, |h, fx| {
            set_link(h, &format!("{}/canary", fx.outside.display()))
        }),
        ErrorKind::Invalid,
        &chunk_path(0x10000),
    );
    assert_names(&msg, "is not a regular file (Symlink)");
}

#[test]
fn hard_link_member() {
    let msg = refused(
        special(EntryType::Link, |h, _| {
            set_link(h, &format!("{UP_TO_ROOT}/outside/canary"))
        }),
        ErrorKind::Invalid,
        &chunk_path(0x10000),
    );
    // A link member is a dedup link (docs/FORMAT.md §12); this target is no
    // chunk location, so it is refused before anything is opened.
    assert_names(&msg, "target refused");
}

#[test]
fn device_members() {
    for (kind, major, minor, what) in [
        (EntryType::Char, 1, 3, "Char"),
        (EntryType::Block, 8, 0, "Block"),
    ] {
        let msg = refused(
            special(kind, |h, _| {
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
            }),
            ErrorKind::Invalid,
            &chunk_path(0x10000),
        );
        assert_names(&msg, &format!("is not a regular file ({what})"));
    }
}

#[test]
fn fifo_member() {
    let msg = refused(
        special(EntryType::Fifo, |_, _| {}),
        ErrorKind::Invalid,
        &chunk_path(0x10000),
    );
    assert_names(&msg, "is not a regular file (Fifo)");
}

#[test]
fn directory_member() {
    let dir = |_: &Fixture| {
        let h = header(b"000000000/", EntryType::Directory, 0, |_| {});
        and_rest(Tar::new().member(&h, &[]))
    };
    let msg = refused(dir, ErrorKind::Invalid, "000000000/");
    assert_names(&msg, "is not a regular file (Directory)");
}

#[test]
fn chunk_over_the_size_limit() {
    let max = chunk_size().max_stored() as usize;
    let name = chunk_path(0x10000);
    let msg = refused(
        |_| and_rest(with_good_chunk().file(&name, &chunk(max + 1))),
        ErrorKind::Invalid,
        &name,
    );
    assert_names(
        &msg,
        &format!("is {} bytes, over the limit of {max}", max + 1),
    );

    // The limit itself is allowed.
    let fx = Fixture::new();
    let mut ag = fx.agent(true);
    let data = and_rest(with_good_chunk().file(&name, &chunk(max)));
    assert!(matches!(
        ag.put(VOL, S1, None, data),
        Response::Stored { .. }
    ));
    ag.bye();
}

/// A PAX `size` record overrides the ustar size field when the entry is
/// read, so the limit must be checked against the entry's real size.
#[test]
fn pax_size_record_cannot_smuggle_an_oversized_chunk() {
    let max = chunk_size().max_stored();
    let name = chunk_path(0x10000);
    let build = |_: &Fixture| {
        let pax = pax_record("size", (max + 1).to_string().as_bytes());
        let xh = header(
            b"PaxHeaders/x",
            EntryType::XHeader,
            pax.len() as u64,
            |_| {},
        );
        let h = header(name.as_bytes(), EntryType::Regular, 0, |_| {});
        and_rest(
            with_good_chunk()
                .member(&xh, &pax)
                .member(&h, &chunk(max as usize + 1)),
        )
    };
    let msg = refused(build, ErrorKind::Invalid, &name);
    assert_names(
        &msg,
        &format!("is {} bytes, over the limit of {max}", max + 1),
    );
}

#[test]
fn info_json_over_its_limit() {
    let build = |_: &Fixture| {
        with_good_chunk()
            .file("manifest", b"m")
            .file("info.json", &vec![b' '; 1024 * 1024 + 1])
            .finish()
    };
    refused(build, ErrorKind::Invalid, "\"info.json\" is 1048577 bytes");
}

#[test]
fn bad_chunk_names() {
    for name in [
        "000000000/X0000000000010000",
        "000000000/x00000000000A0000",
        "000000000/x000000000010000",
        "000000000/x00000000000100000",
        "00000000/x0000000000010000",
        "0000000000/x0000000000010000",
        "000000000/y0000000000010000",
        "000000000/x0000000000010000/",
        "000000000//x0000000000010000",
        "000000000/x0000000000010000.tmp",
        "x0000000000010000",
        "volume.json",
        "archive.json",
        "manifest/x",
        "S_20260101-000000/manifest",
    ] {
        let msg = refused(one_member(name), ErrorKind::Invalid, name);
        assert_names(&msg, "tar member refused");
    }
}

#[test]
fn fan_out_dir_not_matching_the_address() {
    refused(
        one_member("000000001/x0000000000010000"),
        ErrorKind::Invalid,
        "000000001/x0000000000010000",
    );
    refused(
        one_member("000000000/x0000000010000000"),
        ErrorKind::Invalid,
        "000000000/x0000000010000000",
    );
}

#[test]
fn duplicate_members() {
    let name = chunk_path(0);
    let msg = refused(one_member(&name), ErrorKind::Invalid, &name);
    assert_names(&msg, "out of address order or repeated");
    let twice = |_: &Fixture| {
        with_good_chunk()
            .file("manifest", b"a")
            .file("manifest", b"b")
            .file("info.json", b"{}")
            .finish()
    };
    let msg = refused(twice, ErrorKind::Invalid, "\"manifest\"");
    assert_names(&msg, "out of order");
}

#[test]
fn out_of_order_addresses() {
    let build = |_: &Fixture| {
        let t = Tar::new()
            .file(&chunk_path(0x20000), b"b")
            .file(&chunk_path(0x10000), b"a");
        and_rest(t)
    };
    let msg = refused(build, ErrorKind::Invalid, &chunk_path(0x10000));
    assert_names(&msg, "out of address order");
}

#[test]
fn manifest_before_chunks() {
    let build = |_: &Fixture| {
        Tar::new()
            .file("manifest", b"m")
            .file(&chunk_path(0), b"c")
            .file("info.json", b"{}")
            .finish()
    };
    let msg = refused(build, ErrorKind::Invalid, &chunk_path(0));
    assert_names(&msg, "is out of order");
}

#[test]
fn member_after_info_json() {
    let after = |name: String| {
        move |_: &Fixture| {
            with_good_chunk()
                .file("manifest", b"m")
                .file("info.json", b"{}")
                .file(&name, b"late")
                .finish()
        }
    };
    let late_chunk = chunk_path(0x7000_0000);
    refused(after(late_chunk.clone()), ErrorKind::Invalid, &late_chunk);
    refused(
        after("manifest".into()),
        ErrorKind::Invalid,
        "\"manifest\" is out of order",
    );
    refused(
        after("info.json".into()),
        ErrorKind::Invalid,
        "\"info.json\" is out of order",
    );
}

#[test]
fn stream_ends_without_manifest_or_info() {
    let streams: [fn(&Fixture) -> Vec<u8>; 4] = [
        |_| Tar::new().finish(),
        |_| with_good_chunk().finish(),
        |_| with_good_chunk().file("manifest", b"m").finish(),
        |_| Vec::new(),
    ];
    for s in streams {
        refused(
            s,
            ErrorKind::Invalid,
            "ended before its manifest and info.json",
        );
    }
}

#[test]
fn stream_cut_inside_a_member() {
    let build = |_: &Fixture| {
        let mut b = with_good_chunk()
            .file("manifest", b"m")
            .file("info.json", &[b' '; 700])
            .bytes();
        b.truncate(b.len() - 600);
        b
    };
    let msg = refused(build, ErrorKind::Invalid, "\"info.json\" is truncated");
    assert_names(&msg, "after 424 of its 700 bytes");
}

#[test]
fn non_utf8_member_name() {
    let build = |_: &Fixture| {
        let t = with_good_chunk().raw(b"000000000/x000000000001000\xff", EntryType::Regular, b"x");
        and_rest(t)
    };
    let msg = refused(
        build,
        ErrorKind::Invalid,
        "000000000/x000000000001000\u{fffd}",
    );
    assert_names(&msg, "is not UTF-8");
}

/// GNU long-name records replace the header's name; the replacement must be
/// checked like any other name.
#[test]
fn gnu_long_name_smuggling_dotdot() {
    let long = format!("{UP_TO_ROOT}/outside/{}", "a".repeat(120));
    let build = |_: &Fixture| {
        let mut data = long.as_bytes().to_vec();
        data.push(0);
        let mut lh = tar::Header::new_gnu();
        lh.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        lh.set_entry_type(EntryType::GNULongName);
        lh.set_size(data.len() as u64);
        lh.set_mode(0o644);
        lh.set_cksum();
        let h = header(
            chunk_path(0x10000).as_bytes(),
            EntryType::Regular,
            5,
            |_| {},
        );
        and_rest(with_good_chunk().member(&lh, &data).member(&h, b"pwned"))
    };
    refused(build, ErrorKind::Invalid, &long);
}

#[test]
fn pax_path_smuggling_dotdot() {
    let evil = format!("{UP_TO_ROOT}/outside/evil");
    let build = |_: &Fixture| {
        let pax = pax_record("path", evil.as_bytes());
        let xh = header(
            b"PaxHeaders/x",
            EntryType::XHeader,
            pax.len() as u64,
            |_| {},
        );
        let h = header(
            chunk_path(0x10000).as_bytes(),
            EntryType::Regular,
            5,
            |_| {},
        );
        and_rest(with_good_chunk().member(&xh, &pax).member(&h, b"pwned"))
    };
    refused(build, ErrorKind::Invalid, &evil);
}

/// The ustar `prefix` field is joined in front of the name.
#[test]
fn ustar_prefix_smuggling_dotdot() {
    let prefix = format!("{UP_TO_ROOT}/outside");
    let build = |_: &Fixture| {
        let h = header(b"x0000000000010000", EntryType::Regular, 5, |h| {
            let u = h.as_ustar_mut().unwrap();
            u.prefix[..prefix.len()].copy_from_slice(prefix.as_bytes());
        });
        and_rest(with_good_chunk().member(&h, b"pwned"))
    };
    refused(
        build,
        ErrorKind::Invalid,
        &format!("{prefix}/x0000000000010000"),
    );
}
