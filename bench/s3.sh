#!/usr/bin/env bash
# Send and receive to an S3 bucket beside internal:, from the same run
# (issue 16). Starts a one-node Ceph 16.2 with the RADOS Gateway on loopback
# (tests/ceph/start.sh), makes one image (bench/imagegen.py: zeros, text,
# random), then for each of REPEAT rounds and each destination in turn
# (internal: on the file system of BENCH_DIR, internal:s3:bench on the
# gateway, both --encrypt=off, and the same two in format 2 unless
# S3_BENCH_ENC=0): arch-init, a full send, a receive of it (sha256 checked
# against the image) and a verify, each timed. Prints a markdown table of
# medians (MiB of image per second of wall time); docs/BENCHMARKS.md
# ("Object storage") quotes it by hand.
#
#   bench/s3.sh                     1024 MiB image, 3 rounds
#   S3_BENCH_MIB=256 S3_BENCH_REPEAT=1 bench/s3.sh
#
# Release builds of sparsebak and the agent (BENCH_NO_BUILD=1 skips the
# build). BENCH_DIR (default /var/tmp) holds the image, the file-system
# archive and the Ceph OSD's sparse file.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MIB=${S3_BENCH_MIB:-1024}
REPEAT=${S3_BENCH_REPEAT:-3}
ENC=${S3_BENCH_ENC:-1}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-s3bench.XXXXXX")
trap 'tests/ceph/stop.sh "$work/ceph"; rm -rf "$work"' EXIT
[ "${BENCH_NO_BUILD:-0}" = 1 ] || cargo build -q --release -p sparsebak -p sparsebak-agent
BIN=$ROOT/target/release
export SPARSEBAK_AGENT=$BIN/sparsebak-agent
eval "$(tests/ceph/start.sh "$work/ceph")"
curl -sS -o /dev/null --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "$S3_ENDPOINT/bench"
mkdir -p "$work/stores" "$work/img" "$work/fs"
printf 'endpoint = %s\nbucket = bench\nregion = %s\n' "$S3_ENDPOINT" "$S3_REGION" >"$work/stores/bench.conf"
export SPARSEBAK_STORE_DIR=$work/stores AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
python3 bench/imagegen.py create "$work/img/vol1" $((MIB << 20)) 7 >&2
SUM=$(sha256sum <"$work/img/vol1" | cut -d' ' -f1)
MP=$(stat -c %m "$work")
echo "pass for the bench" >"$work/pass"

# one ROUND KIND ENCRYPT: init, send, receive, verify; prints KIND ENC send receive verify (seconds).
one() {
    local r=$1 kind=$2 enc=$3 dest sub meta=$work/meta-$1-$2-$3 t0 t1 t2 t3
    if [ "$kind" = s3 ]; then dest=internal:s3:bench sub=r$r-$enc; else
        dest=internal:$MP sub=$(realpath -m --relative-to="$MP" "$work/fs/r$r-$enc"); fi
    export SPARSEBAK_META_DIR=$meta
    "$BIN/sparsebak" arch-init --dest="$dest" --subdir="$sub" --source="dir:$work/img" \
        --encrypt="$enc" --passphrase-file="$work/pass" >/dev/null
    "$BIN/sparsebak" add vol1 >/dev/null
    sync
    t0=$(date +%s.%N)
    "$BIN/sparsebak" -u send >/dev/null
    t1=$(date +%s.%N)
    "$BIN/sparsebak" -u receive vol1 --save-to="$work/restored" >/dev/null
    t2=$(date +%s.%N)
    "$BIN/sparsebak" verify vol1 >/dev/null
    t3=$(date +%s.%N)
    [ "$(sha256sum <"$work/restored" | cut -d' ' -f1)" = "$SUM" ] || { echo "$kind $enc: restored image differs" >&2; exit 1; }
    rm -f "$work/restored"
    rm -rf "$work/fs/r$r-$enc"
    echo "$kind $enc $(echo "$t1 - $t0" | bc) $(echo "$t2 - $t1" | bc) $(echo "$t3 - $t2" | bc)"
}

encs=(off)
[ "$ENC" = 0 ] || encs+=(on)
for r in $(seq "$REPEAT"); do
    for enc in "${encs[@]}"; do
        for kind in fs s3; do one "$r" "$kind" "$enc"; done
    done
done >"$work/times"
echo "image $MIB MiB, $REPEAT round(s), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| destination | format | send MiB/s | receive MiB/s | verify MiB/s | send s | receive s | verify s |"
echo "|---|---|---|---|---|---|---|---|"
python3 - "$work/times" "$MIB" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    k, e, *t = line.split()
    rows.setdefault((k, e), []).append([float(x) for x in t])
mib = float(sys.argv[2])
for (k, e), runs in rows.items():
    med = [statistics.median(c) for c in zip(*runs)]
    name = "internal: (file system)" if k == "fs" else "internal:s3: (RGW)"
    fmt = "1 (--encrypt=off)" if e == "off" else "2 (encrypted)"
    print(f"| {name} | {fmt} | " + " | ".join(f"{mib / s:.0f}" for s in med) + " | " + " | ".join(f"{s:.2f}" for s in med) + " |")
PY
