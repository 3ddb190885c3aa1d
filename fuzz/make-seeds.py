#!/usr/bin/env python3
"""Write the small seed corpus of every fuzz target into fuzz/seeds/<target>/.

Run from anywhere: `python3 fuzz/make-seeds.py`. The output is committed; the
inputs mirror what sparsebak writes (docs/FORMAT.md), so the fuzzers start
from valid files and mutate from there.
"""
import gzip
import io
import json
import os
import struct
import tarfile
import zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
S1, S2, S3 = "S_20260101-000000", "S_20260102-000000", "S_20260103-000000"
H = "ab" * 32
H2 = "cd" * 32


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def chunk_path(addr):
    h = "%016x" % addr
    return "%s/x%s" % (h[:9], h)


def sbc(data, codec):
    payload = {0: data, 2: zlib.compress(data)}[codec]
    return b"SBC\x01" + bytes([codec, 0, 0, 0]) + struct.pack("<I", len(data)) + payload


def frame(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def tar_bytes(members, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data, kind, pax in members:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            if kind == tarfile.LNKTYPE:
                ti.linkname = pax.pop("linkpath")
            ti.pax_headers = pax
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def main():
    text = b"hello sparsebak " * 64
    put("chunk_decode", "raw", struct.pack("<I", 100) + sbc(bytes(range(100)), 0))
    put("chunk_decode", "zlib", struct.pack("<I", len(text)) + sbc(text, 2))

    # Format 2 targets seal their own inputs; these are plain bytes to start from.
    put("sealed_chunk", "text", struct.pack("<HH", len(text), 100) + text)
    put("sealed_chunk", "short", struct.pack("<HH", 1, 3) + b"xy")
    put("sealed_meta", "manifest", struct.pack("<H", 70) + ("%s %s x%016x\n" % (H, H2, 0)).encode() * 3)
    put("sealed_meta", "sealed-looking", struct.pack("<H", 5) + b"sparsebak-sealed 2 manifest AAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAA\n")
    wrap = {"kdf": "argon2id", "version": 19, "memory_kib": 64, "iterations": 1, "parallelism": 1,
            "salt": "00" * 16, "nonce": "11" * 24, "wrapped": "22" * 48}
    put("key_wrap", "wrap", json.dumps(wrap))
    put("key_wrap", "header", json.dumps({
        "format": "sparsebak-archive", "format_version": 2, "uuid": "u", "chunk_size": 65536,
        "compression": {"codec": "zstd", "level": 3}, "hash": "sha256",
        "encryption": "xchacha20poly1305", "created_utc": "2026-11-22T04:00:00Z",
        "key": wrap, "mac": "33" * 32}))

    put("legacy_chunk", "zlib", struct.pack("<H", 256) + zlib.compress(text))
    put("legacy_chunk", "gzip", struct.pack("<H", 256) + gzip.compress(text, mtime=0))

    put("legacy_ini", "archive.ini",
        "[var]\nvgname = qubes_dom0\npoolname = pool00\ndestvm = internal\n"
        "destsys = internal:\ndestmountpoint = /mnt/backup\ndestdir = .\n"
        "chunksize = 65536\ncompression = zlib\nhashtype = sha256\n"
        "uuid = 1234\n\n[volumes]\nvm-work-private = enable\nvm-old = disable\n")
    put("legacy_ini", "info",
        "format_ver = 1\nvolsize = 1048576\nchunksize = 65536\nformat = folders\n"
        "sequence = 2\nprevious = %s\n" % S1)
    put("legacy_ini", "volinfo", "format_ver = 1\nlast = %s\n" % S2)

    put("legacy_manifest", "m", b"\x00" + ("%s x0000000000000000\n0 x0000000000010000\n%s x0000000000030000\n" % (H, H2)).encode())

    put("manifest", "m", "%s %s x0000000000000000\n0 x0000000000010000\n%s %s x0000000000020000\n" % (H, H2, H2, H))

    for i, s in enumerate([
        chunk_path(0x30000), "%s/%s" % (S1, chunk_path(0x30000)), "%s/manifest" % S1,
        "%s/info.json" % S1, "volume.json", "volumes/vm-a/%s/%s" % (S1, chunk_path(0x10000)),
        "volumes/vm-a/%s/%s volumes/vm-b/%s/%s %s" % (S1, chunk_path(0), S2, chunk_path(0), H),
        "vm-work-private", "zstd:3", "zlib:9", S3, "256",
        json.dumps({"format": "sparsebak-archive", "format_version": 1, "uuid": "u",
                    "chunk_size": 65536, "compression": {"codec": "zstd", "level": 3},
                    "hash": "sha256", "encryption": "none",
                    "created_utc": "2026-01-01T00:00:00Z"}),
    ]):
        put("names", "n%02d" % i, s)

    put("proto", "requests", b"".join(frame(json.dumps(m)) for m in [
        {"op": "hello", "protocol": 1},
        {"op": "open", "dest_path": "/m/x", "mountpoint": "/m", "write": True},
        {"op": "put_session", "vol": "v", "session": S1, "expect_last": None, "format": "tar"},
        {"op": "read_meta", "vol": "v", "path": "volume.json", "offset": 0},
        {"op": "prune", "vol": "v", "target": S3, "pruned": [S1, S2]},
        {"op": "bye"},
    ]))
    put("proto", "replies", b"".join(frame(json.dumps(m)) for m in [
        {"reply": "hello", "protocol": 1, "agent_version": "0.3.0", "features": ["read_meta"]},
        {"reply": "sessions", "committed": [S1], "in_progress": []},
        {"reply": "error", "kind": "not_found", "message": "x"},
    ]))
    put("proto", "stream", frame(b"abc") + frame(b"defg") + frame(b""))

    put("prune_plan", "plan",
        "sparsebak-prune-plan 1\nvol v\ntarget %s\nprune %s\nprune %s\n"
        "move %s x0000000000000000\nmove %s x0000000000010000\nend 2\n" % (S3, S1, S2, S2, S1))
    # Once accepted (plan::tests::end_count_with_a_plus_sign_is_refused).
    put("prune_plan", "end-plus",
        "sparsebak-prune-plan 1\nvol v\ntarget %s\nprune %s\nprune %s\n"
        "move %s x0000000000000000\nmove %s x0000000000010000\nend +2\n" % (S3, S1, S2, S2, S1))

    info = json.dumps({"name": S1, "sequence": 1, "previous": None, "volsize": 1048576,
                       "chunk_size": 65536, "created_utc": "2026-01-01T00:00:00Z",
                       "format": "folders", "chunks": 16, "stored_chunks": 2,
                       "stored_bytes": 200, "manifest_sha256": H})
    put("recover_check", "info.json", info)
    put("recover_check", "info2.json", info.replace(S1, S2).replace('"previous": null', '"previous": "%s"' % S1)
        .replace('"sequence": 1', '"sequence": 2').replace('"chunks": 16', '"chunks": 3'))
    put("recover_check", "volume.json", json.dumps(
        {"name": "vm-work-private", "uuid": "0c9f6d4e-1a7b-4a51-9f3e-2b6c8d0e1f23", "last": None}))
    put("recover_check", "list", "%s\n%s\n" % (S1, S2))

    reg = tarfile.REGTYPE
    members = [(chunk_path(0), b"x" * 700, reg, {}), (chunk_path(0x10000), b"y" * 10, reg, {}),
               ("manifest", b"m\n", reg, {}), ("info.json", b"{}", reg, {})]
    stream = tar_bytes(members)
    put("put_session", "folders", b"\x01" + stream)
    put("put_session", "tar", b"\x02" + stream)
    link = [(chunk_path(0), b"z" * 5, reg, {}),
            (chunk_path(0x10000), b"", tarfile.LNKTYPE,
             {"linkpath": "volumes/vm-a/%s/%s" % (S1, chunk_path(0)),
              "SPARSEBAK.sha256": "68a55e5b1e43c67f4ef34065a86c4c583f532ae8e3cda7e36cc79b611802ac07"}),
            ("manifest", b"m\n", reg, {}), ("info.json", b"{}", reg, {})]
    put("put_session", "link", b"\x00" + tar_bytes(link, tarfile.PAX_FORMAT))

    # A part as the agent writes it: ustar members, 512-aligned data.
    tar = tar_bytes([(chunk_path(a), bytes([a >> 16]) * n, reg, {})
                     for a, n in [(0, 700), (0x10000, 0), (0x20000, 512)]])
    idx = b"SBTIDX1\n" + struct.pack("<Q", 3)
    off = 0
    for a, n in [(0, 700), (0x10000, 0), (0x20000, 512)]:
        idx += struct.pack("<QQQ", a, off + 512, n)
        off += 512 + (n + 511) // 512 * 512
    put("tar_part", "part", struct.pack("<H", len(idx)) + idx + tar)

    put("agent_replies", "session", b"".join([
        frame(json.dumps({"reply": "opened", "header": None, "free_bytes": 1, "total_bytes": 2})),
        frame(json.dumps({"reply": "sessions", "committed": [S1], "in_progress": []})),
        frame(b"\x00chunk bytes"), frame(b"\x01"), frame(b"\x02refused: no"),
        frame(json.dumps({"reply": "ok"})),
        frame(json.dumps({"reply": "volumes", "names": ["vm-a"]})),
    ]))
    put("agent_replies", "meta", b"".join([
        frame(json.dumps({"reply": "hello", "protocol": 1, "agent_version": "0.3.0",
                          "features": ["read_meta"]})),
        frame(json.dumps({"reply": "meta_piece", "size": 10, "len": 4})), frame(b"abcd"),
        frame(json.dumps({"reply": "meta_piece", "size": 10, "len": 6})), frame(b"efghij"),
        frame(json.dumps({"reply": "meta_piece", "size": 10, "len": 0})), frame(b""),
    ]))
    put("agent_replies", "resume", b"".join([
        frame(json.dumps({"reply": "hello", "protocol": 1, "agent_version": "0.3.0",
                          "features": ["resume"]})),
        frame(json.dumps({"reply": "resume_held", "count": 2, "more": True})),
        frame(struct.pack(">Q", 0) + b"\x11" * 32 + struct.pack(">Q", 0x10000) + b"\x22" * 32),
        frame(json.dumps({"reply": "resume_held", "count": 0, "more": False})), frame(b""),
    ]))
    put("lvs", "report", json.dumps({"report": [{"lv": [
        {"lv_name": "pool00", "lv_attr": "twi-aotz--", "lv_size": "107374182400B",
         "pool_lv": "", "thin_id": ""},
        {"lv_name": "vm-work-private", "lv_attr": "Vwi-a-tz--", "lv_size": "2147483648B",
         "pool_lv": "pool00", "thin_id": "7"}]}]}))
    put("lvs", "version", "1.0.12\n")

    put("s3_replies", "list",
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        '<Name>b</Name><IsTruncated>true</IsTruncated>'
        '<Contents><Key>volumes/vm-a/S_20261122-040000/commit-00000001</Key>'
        '<LastModified>2026-12-05T08:17:48.000Z</LastModified><Size>412</Size></Contents>'
        '<Contents><Key>data/a&amp;b&#x2F;c</Key><LastModified>2026-12-05T08:17:49Z</LastModified>'
        '<Size>67108864</Size></Contents>'
        '<NextContinuationToken>tok&lt;1</NextContinuationToken></ListBucketResult>\n')
    put("s3_replies", "lease",
        json.dumps({"owner": "00112233445566778899aabbccddeeff", "host": "sys-backup",
                    "pid": 4242, "lease_secs": 600, "state": "held"}))
    put("s3_replies", "date", "Sat, 05 Dec 2026 08:17:48 GMT")

    put("s3_replies", "error",
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
        '<Message>The specified key does not exist &amp; never did.</Message>'
        '<RequestId>tx0</RequestId></Error>')

    # s3store: a session generation's index (a limit byte, then the index),
    # its commit, object names of a listing, a sealed chunk file in a pack.
    packs = ["0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"]
    ents = [(0, 0, 0, 700), (0x10000, 0, 700, 60), (0x30000, 1, 0, 4096)]
    ix = b"SBIDX01\n" + struct.pack("<I", len(packs)) + "".join(packs).encode()
    ix += b"".join(struct.pack("<QIQI", a, p, o, n) for a, p, o, n in ents)
    put("s3_index", "index", b"\x02" + ix)
    put("s3_index", "empty", b"\x01" + b"SBIDX01\n" + struct.pack("<I", 0))
    obj = lambda n: {"sha256": H, "size": n}
    put("s3_objects", "commit", json.dumps({
        "session": S2, "gen": 1, "manifest": obj(300), "info": obj(400), "index": obj(len(ix) - 1),
        "volume": json.dumps({"volsize": 1048576, "uuid": "u"})}))
    put("s3_objects", "pruned", json.dumps({
        "session": S3, "gen": 2, "manifest": obj(300), "info": obj(400), "index": obj(100),
        "volume": "{}", "absorbed": [S1, S2]}))
    put("s3_objects", "key", "%s/commit-0000000a" % S1)
    put("s3_objects", "sealed", b"SBC\x02" + bytes(range(12)) + b"\x5a" * 40)

    put("thin_delta", "delta",
        '<superblock uuid="" time="2" transaction="3" data_block_size="128" nr_data_blocks="0">\n'
        '  <diff left="2" right="3">\n    <same begin="0" length="16"/>\n'
        '    <different begin="16" length="1"/>\n    <right_only begin="3200" length="2"/>\n'
        '    <left_only begin="4800" length="16"/>\n  </diff>\n</superblock>\n')

    # A size byte (MiB), then thin_dump --dev-id 3 of a pool.
    put("thin_dump", "map", b"\x02" + (
        '<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="16384">\n'
        '  <device dev_id="3" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">\n'
        '    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>\n'
        '    <single_mapping origin_block="10" data_block="20" time="0"/>\n'
        '  </device>\n</superblock>\n').encode())

    u = "0b0e6d9a-4c1f-4a7e-9f7e-2b3c4d5e6f70"
    put("qube_record", "appvm", json.dumps({
        "format": "sparsebak-qube-settings", "version": 1, "uuid": u, "name": "work",
        "class": "AppVM", "template": "fedora-41", "label": "red",
        "properties": [["netvm", "sys-firewall"], ["kernelopts", "nopat"]],
        "features": [["service.cups", "1"]], "tags": ["created-by-dom0"],
        "firewall": ["action=accept dsthost=10.0.0.1 proto=tcp dstports=443-443",
                     "action=drop comment=the rest"],
        "devices": [{"class": "pci", "device": "dom0:00_14.0", "mode": "required",
                     "options": [["no-strict-reset", "True"]]}],
        "volumes": [{"volume": "private", "archive": "qube.%s.private" % u,
                     "session": S1, "size": 2147483648}],
        "created_utc": "2026-12-05T08:00:00Z"}, indent=2))


if __name__ == "__main__":
    main()
