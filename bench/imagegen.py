#!/usr/bin/env python3
"""Benchmark volume images for bench/bench.sh.

  imagegen.py create PATH SIZE_BYTES [SEED]   write a new image
  imagegen.py mutate PATH PERCENT [SEED]      overwrite PERCENT% of it with
                                              random 64 KiB-aligned writes

The image mixes, by bytes, about 30% zeros (free space, written as real
zeros so they cost disk reads like on a block device), 40% text-like and
structured data (log lines, source-like text, JSON, fixed-size binary
records: compresses about 3-4x with zstd -3) and 30% random data
(compressed media, encrypted files). Regions are 64 KiB to 8 MiB long, in a
seeded random order, 4 KiB aligned, so some 64 KiB chunks straddle two
kinds. Everything is deterministic for a given seed except the random
regions themselves (os.urandom, for speed).
"""

import os
import random
import struct
import sys

MIB = 1 << 20
ALIGN = 4096
CHANGE_UNIT = 64 * 1024

WORDS = (
    "the of and to in is that for it as with was on be by at this from or an are "
    "not have but which all were when we there can has more if will one about up "
    "out so what their time other into only its new some could these two may then "
    "first any like now over such our after also most made many before must through "
    "backup volume qubes dom0 thin pool chunk session archive restore merge prune "
    "kernel systemd network device mount error warning info debug started stopped "
    "user root home var lib usr share config service daemon request response client "
    "server connection timeout retry cache buffer file directory read write open "
    "close sync flush commit rollback transaction index table query select insert "
    "update delete value key name type size offset length count total status ok"
).split()
HOSTS = ["sys-net", "sys-firewall", "work", "personal", "vault", "dom0", "sys-usb"]
SERVICES = ["sshd", "systemd", "kernel", "NetworkManager", "qrexec", "xenstored", "cron"]
IDENTS = ["buf", "len", "off", "ctx", "res", "data", "chunk", "idx", "path", "err"]


def text_pool(rnd: random.Random, size: int) -> bytes:
    """Text of several kinds, to be sliced from random offsets."""
    out = []
    n = 0
    while n < size:
        kind = rnd.randrange(4)
        if kind == 0:  # syslog lines
            lines = []
            for _ in range(200):
                ts = f"2024-{rnd.randint(1, 12):02}-{rnd.randint(1, 28):02}T{rnd.randint(0, 23):02}:{rnd.randint(0, 59):02}:{rnd.randint(0, 59):02}"
                msg = " ".join(rnd.choices(WORDS, k=rnd.randint(4, 14)))
                lines.append(
                    f"{ts} {rnd.choice(HOSTS)} {rnd.choice(SERVICES)}[{rnd.randint(100, 65000)}]: {msg} "
                    f"code={rnd.randint(0, 999)}\n"
                )
            block = "".join(lines)
        elif kind == 1:  # prose
            block = "".join(
                " ".join(rnd.choices(WORDS, k=rnd.randint(8, 20))).capitalize() + ".\n"
                for _ in range(300)
            )
        elif kind == 2:  # source-like text
            lines = []
            for _ in range(250):
                a, b = rnd.choice(IDENTS), rnd.choice(IDENTS)
                ind = "    " * rnd.randint(0, 3)
                lines.append(
                    rnd.choice(
                        [
                            f"{ind}let {a} = {b}.{rnd.choice(WORDS)}({rnd.randint(0, 4096)});\n",
                            f"{ind}if {a} > {rnd.randint(0, 1 << 16)} {{ return Err({b}); }}\n",
                            f"{ind}// {' '.join(rnd.choices(WORDS, k=rnd.randint(3, 10)))}\n",
                            f"{ind}{a}.{rnd.choice(WORDS)}_{rnd.choice(WORDS)}(&mut {b})?;\n",
                        ]
                    )
                )
            block = "".join(lines)
        else:  # JSON records
            block = "".join(
                '{"id": %d, "name": "%s", "host": "%s", "size": %d, "tags": ["%s", "%s"], "ok": %s}\n'
                % (
                    rnd.randint(0, 1 << 31),
                    rnd.choice(WORDS),
                    rnd.choice(HOSTS),
                    rnd.randint(0, 1 << 24),
                    rnd.choice(WORDS),
                    rnd.choice(WORDS),
                    rnd.choice(["true", "false"]),
                )
                for _ in range(200)
            )
        b = block.encode()
        out.append(b)
        n += len(b)
    return b"".join(out)[:size]


def record_pool(rnd: random.Random, size: int) -> bytes:
    """Fixed-size binary records, like database pages or file system tables."""
    rec = struct.Struct("<QIIHHHH8s")
    out = bytearray()
    ident = rnd.randrange(1 << 40)
    ts = 1_700_000_000
    while len(out) < size:
        ident += rnd.randint(1, 3)
        ts += rnd.randint(0, 5)
        out += rec.pack(
            ident,
            ts,
            rnd.randint(0, 1 << 20),
            rnd.randrange(16),
            rnd.randrange(1 << 16),
            0,
            0xFFFF,
            rnd.choice(WORDS).encode()[:8],
        )
    return bytes(out[:size])


def create(path: str, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    pool = text_pool(rnd, 24 * MIB) + record_pool(rnd, 8 * MIB)
    pool = pool + pool[: 8 * MIB]  # slices may wrap
    zeros = bytes(8 * MIB)
    budget = {"zero": size * 3 // 10, "text": size * 4 // 10}
    budget["random"] = size - budget["zero"] - budget["text"]
    written = {k: 0 for k in budget}
    pos = 0
    with open(path, "wb", buffering=0) as f:
        while pos < size:
            kinds = [k for k in budget if budget[k] > 0]
            kind = rnd.choices(kinds, weights=[budget[k] for k in kinds])[0]
            n = rnd.randrange(16, 2048) * ALIGN
            n = min(n, budget[kind], size - pos)
            while n > 0:
                step = min(n, 8 * MIB)
                if kind == "zero":
                    f.write(zeros[:step])
                elif kind == "text":
                    start = rnd.randrange(len(pool) - 8 * MIB)
                    f.write(pool[start : start + step])
                else:
                    f.write(os.urandom(step))
                n -= step
                pos += step
                budget[kind] -= step
                written[kind] += step
        os.fsync(f.fileno())
    parts = ", ".join(f"{k} {100 * v / size:.0f}%" for k, v in written.items())
    print(f"created {path}: {size} bytes ({parts})")


def mutate(path: str, percent: float, seed: int) -> None:
    size = os.path.getsize(path)
    units = size // CHANGE_UNIT
    count = max(1, round(size * percent / 100 / CHANGE_UNIT))
    picks = sorted(random.Random(seed).sample(range(units), count))
    fd = os.open(path, os.O_WRONLY)
    try:
        for u in picks:
            os.pwrite(fd, os.urandom(CHANGE_UNIT), u * CHANGE_UNIT)
        os.fsync(fd)
    finally:
        os.close(fd)
    print(
        f"mutated {path}: {count} random 64 KiB writes = {count * CHANGE_UNIT} bytes "
        f"({100 * count * CHANGE_UNIT / size:.2f}%)"
    )


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[1] not in ("create", "mutate"):
        print(__doc__, file=sys.stderr)
        return 2
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if sys.argv[1] == "create":
        create(sys.argv[2], int(sys.argv[3]), seed)
    else:
        mutate(sys.argv[2], float(sys.argv[3]), seed + 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
