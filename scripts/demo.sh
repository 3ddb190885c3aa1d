#!/usr/bin/env bash
# sparsebak demo: needs neither root nor LVM.
# Generates a volume image, backs it up fully, changes it, backs it up
# incrementally, then restores every session and checks it byte for byte.
#   scripts/demo.sh            (DEMO_SIZE_MIB=256 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${DEMO_SIZE_MIB:-256}

echo "== building sparsebak (release)"
cargo build --release --workspace -q
BIN=$PWD/target/release
export SPARSEBAK_AGENT=$BIN/sparsebak-agent

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export SPARSEBAK_META_DIR=$WORK/meta          # local metadata (normally /var/lib/sparsebak)
mkdir -p "$WORK/images" "$WORK/restored"
sb() { "$BIN/sparsebak" "$@"; }

echo "== generating a ${SIZE_MIB} MiB volume image: zeros, text and random data"
python3 - "$WORK/images/demo-vol" "$SIZE_MIB" <<'PY'
import os, random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
words = b"backup volume qubes dom0 thin pool chunk session archive restore merge prune the of and to in".split()
with open(path, "wb") as f:
    for i in range(mib):
        kind = i % 10
        if kind < 3:
            f.write(b"\0" * (1 << 20))                       # 30% zeros (free space)
        elif kind < 7:                                        # 40% text-like data
            line = b" ".join(rnd.choice(words) for _ in range(12)) + b"\n"
            f.write((line * ((1 << 20) // len(line) + 1))[: 1 << 20])
        else:
            f.write(os.urandom(1 << 20))                      # 30% random (compressed media)
PY
IMG=$WORK/images/demo-vol
sums=()

# The archive lives on whatever file system holds $WORK; --dest names that
# mountpoint (sparsebak checks it is mounted) and --subdir the path below it.
MP=$(stat -c %m "$WORK")
SUB=$(realpath --relative-to="$MP" "$WORK/archive")
echo "== arch-init: encrypted archive in $WORK/archive"
# The passphrase unlocks the archive's key for arch-recover on a new
# machine; day to day, sparsebak uses the key kept in its metadata dir.
# Without --passphrase-file (or --passphrase-fd) it is asked twice at the
# terminal. Keep the passphrase somewhere safe, away from the backups.
printf '%s\n' "demo passphrase $(date +%s)" >"$WORK/passphrase"
sb arch-init --dest="internal:$MP" --subdir="$SUB" --source="dir:$WORK/images" \
    --passphrase-file="$WORK/passphrase"
sb add demo-vol

echo "== full send"
sums+=("$(sha256sum <"$IMG" | cut -d' ' -f1)")
sb send -u

echo "== changing 2% of the image (writes at 5 places) and sending again"
python3 - "$IMG" "$SIZE_MIB" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    for k in range(5):
        f.seek((k * 2 + 1) * (mib << 20) // 11)
        f.write(os.urandom(mib * (1 << 20) // 250))
PY
sums+=("$(sha256sum <"$IMG" | cut -d' ' -f1)")
sb send -u
echo
sb list demo-vol

echo
echo "== receiving every session and comparing with the image as it was sent"
mapfile -t sessions < <(sb list demo-vol --json | python3 -c 'import json,sys; [print(s["name"][2:]) for s in json.load(sys.stdin)]')
ok=0
for i in "${!sessions[@]}"; do
    s=${sessions[$i]}
    out=$WORK/restored/$s.img
    sb receive demo-vol --session="$s" --save-to="$out" -u
    got=$(sha256sum <"$out" | cut -d' ' -f1)
    if [ "$got" = "${sums[$i]}" ]; then
        echo "   session $s: sha256 $got matches the source  OK"
        ok=$((ok + 1))
    else
        echo "   session $s: sha256 $got != source ${sums[$i]}  FAILED"
    fi
done
sb verify demo-vol
echo
du -sh "$WORK/archive" | awk '{print "archive size on disk: "$1}'
if [ "$ok" -ne "${#sessions[@]}" ]; then
    echo "DEMO FAILED: $ok of ${#sessions[@]} sessions restored equal"
    exit 1
fi
echo "Demo complete: ${#sessions[@]} sessions, each restored byte for byte."
