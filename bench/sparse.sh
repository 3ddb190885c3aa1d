#!/usr/bin/env bash
# Sparse image benchmark: the full send of a large sparse image file holding
# little data must cost in proportion to the data (issue 14: 64 GiB holding
# 8 MiB, target under 2 s; it took 102 s when the holes were read).
#
# Creates a sparse image of SPARSE_SIZE_GIB GiB (default 64) holding
# SPARSE_DATA_MIB MiB (default 8) of random data in 1 MiB pieces spread over
# it, then measures, with a cold page cache when run as root: a full send
# to a fresh archive (best of SPARSE_REPEAT, default 3), a send after 1 MiB
# was written into a hole, and a send with no changes. For each: wall time,
# CPU (sparsebak and its agent), and the bytes sparsebak read (rchar of
# /proc/PID/io: every read and pread of its own process, manifests and
# agent replies included; the agent's reads are counted in it once it is
# reaped) and, from a second, untimed run of each under `strace -f -P IMG`,
# the bytes it read from the image itself, next to the image's allocated
# bytes. Prints a
# markdown table; docs/BENCHMARKS.md ("Sparse images") quotes it by hand.
#
#   bench/sparse.sh                                   64 GiB / 8 MiB in /var/tmp
#   SPARSE_SIZE_GIB=1024 SPARSE_DATA_MIB=64 bench/sparse.sh
#
# Environment: SPARSE_SIZE_GIB, SPARSE_DATA_MIB, SPARSE_REPEAT, BENCH_DIR
# (default /var/tmp; tmpfs works too, holes cost no memory there),
# BENCH_NO_BUILD=1 (use the release binaries already built), BENCH_KEEP=1,
# SPARSE_BASELINE=0 (skip the baseline: dd of the whole image, holes and
# all, which takes tens of seconds at 64 GiB).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
SIZE_GIB=${SPARSE_SIZE_GIB:-64}
DATA_MIB=${SPARSE_DATA_MIB:-8}
REPEAT=${SPARSE_REPEAT:-3}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SB=$BIN/sparsebak

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'sparse bench: %s\n' "$*" >&2
	exit 1
}

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release --workspace -q)
fi
[[ -x $SB && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"
export SPARSEBAK_AGENT=$BIN/sparsebak-agent

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-sparse.XXXXXX")
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
SRC=$W/images
VOL=sparsevol
IMG=$SRC/$VOL
mkdir -p "$SRC"

# The image: a hole of SIZE_GIB GiB, then DATA_MIB random 1 MiB pieces at
# evenly spread, 4 KiB-aligned but chunk-unaligned offsets.
python3 - "$IMG" "$SIZE_GIB" "$DATA_MIB" <<'PY'
import os, sys
path, size, pieces = sys.argv[1], int(float(sys.argv[2]) * 2**30), int(sys.argv[3])
with open(path, "wb") as f:
    f.truncate(size)
    step = size // pieces
    for i in range(pieces):
        off = min(i * step + 12288, size - 2**20) // 4096 * 4096
        f.seek(off)
        f.write(os.urandom(2**20))
PY
SIZE=$(stat -c %s "$IMG")
ALLOC=$(($(stat -c %b "$IMG") * $(stat -c %B "$IMG")))
say "image: $SIZE bytes, $ALLOC allocated, on $(findmnt -n -o FSTYPE -T "$W")"

DROPPED=yes
cold() {
	sync
	{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || DROPPED=no
}

# measure NAME ARGS...: sparsebak ARGS with a cold cache, figures in $W/NAME.env.
measure() {
	local name=$1
	shift
	cold
	python3 "$BENCH/rchar.py" "$W/$name.env" "$SB" "$@" >"$W/$name.log" 2>&1 ||
		{ cat "$W/$name.log" >&2; die "$name failed"; }
	say "$name: $(paste -sd ' ' "$W/$name.env")"
}
get() { sed -n "s/^$2=//p" "$W/$1.env"; }

# traced NAME ARGS...: sparsebak ARGS under strace, untimed; the bytes its
# pread64 calls returned from the image go to $W/NAME.env as image_read.
traced() {
	local name=$1
	shift
	if ! command -v strace >/dev/null; then
		echo "image_read=" >>"$W/$name.env"
		return
	fi
	strace -f -qq -o "$W/$name.strace" -e trace=pread64 -e signal=none -P "$IMG" "$SB" "$@" >"$W/$name.traced.log" 2>&1 ||
		{ cat "$W/$name.traced.log" >&2; die "$name (traced) failed"; }
	echo "image_read=$(awk '$NF ~ /^[0-9]+$/ { n += $NF } END { print n + 0 }' "$W/$name.strace")" >>"$W/$name.env"
}

MP=$(stat -c %m "$W")
BEST=
for ((i = 1; i <= REPEAT; i++)); do
	mkdir -p "$W/archive.$i"
	export SPARSEBAK_META_DIR=$W/meta.$i
	"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$W/archive.$i")" \
		--source="dir:$SRC" --encrypt=off >/dev/null
	"$SB" add "$VOL" >/dev/null
	measure "full.$i" -u send "$VOL"
	if [[ -z $BEST ]] || python3 -c "import sys; sys.exit(not $(get "full.$i" wall) < $(get "$BEST" wall))"; then
		BEST=full.$i
	fi
done
# The same sends again under strace, in another archive (the first; the
# last one is measured below), for the image's own share of the reads.
export SPARSEBAK_META_DIR=$W/meta.1
rm -rf "$W/meta.1" "$W/archive.1" && mkdir -p "$W/archive.1"
"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$W/archive.1")" \
	--source="dir:$SRC" --encrypt=off >/dev/null
"$SB" add "$VOL" >/dev/null
traced "$BEST" -u send "$VOL"
export SPARSEBAK_META_DIR=$W/meta.$REPEAT
python3 - "$IMG" <<'PY'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 3 // 4096 * 4096)
    f.write(os.urandom(2**20))
PY
ALLOC_INCR=$(($(stat -c %b "$IMG") * $(stat -c %B "$IMG")))
measure incr -u send "$VOL"
measure nochange -u send "$VOL"
SPARSEBAK_META_DIR=$W/meta.1 traced incr -u send "$VOL"
SPARSEBAK_META_DIR=$W/meta.1 traced nochange -u send "$VOL"
grep -q "no changes" "$W/nochange.log" || die "the last send found changes: $(cat "$W/nochange.log")"

# The baseline, same run: reading the whole image, holes included, which
# any reader that does not know the holes must do at least (dd, 4 MiB reads).
if [[ ${SPARSE_BASELINE:-1} == 1 ]]; then
	say "baseline: dd of the whole image"
	cold
	python3 "$BENCH/rchar.py" "$W/dd.env" dd if="$IMG" of=/dev/null bs=4M status=none
	echo "image_read=$(get dd rchar)" >>"$W/dd.env"
	say "dd: $(paste -sd ' ' "$W/dd.env")"
fi

row() { # row LABEL NAME ALLOCATED
	python3 - "$1" "$(get "$2" wall)" "$(get "$2" user)" "$(get "$2" sys)" "$(get "$2" rchar)" "$(get "$2" image_read)" "$3" <<'PY'
import sys
label, wall, user, sys_, rchar, image, alloc = sys.argv[1:]
mib = lambda b: f"{int(b) / 2**20:.1f} MiB" if b else "?"
ratio = f"{int(image) / int(alloc):.2f}" if image else "?"
print(f"| {label} | {float(wall):.2f} | {float(user) + float(sys_):.2f} "
      f"| {mib(rchar)} | {mib(image)} | {mib(alloc)} | {ratio} |")
PY
}
echo
echo "$(date -u +%Y-%m-%d), commit $(cd "$ROOT" && git rev-parse --short HEAD); command:" \
	"\`$(env | grep -E '^(SPARSE_|BENCH_DIR)' | sort | tr '\n' ' ')bench/sparse.sh\`;" \
	"$(findmnt -n -o FSTYPE -T "$W"), $(nproc) CPUs, caches dropped: $DROPPED;" \
	"image $((SIZE >> 30)) GiB, full send best of $REPEAT ($(for ((i = 1; i <= REPEAT; i++)); do get "full.$i" wall; done | paste -sd ' ') s)."
echo
echo "| operation | wall s | CPU s | read by sparsebak and agent (rchar) | of it, from the image | allocated in the image | image read / allocated |"
echo "|---|---:|---:|---:|---:|---:|---:|"
row "full send" "$BEST" "$ALLOC"
row "send after 1 MiB written into a hole" incr "$ALLOC_INCR"
row "send with no changes" nochange "$ALLOC_INCR"
[[ ! -s $W/dd.env ]] || row "baseline: dd bs=4M of the whole image" dd "$ALLOC_INCR"
echo
grep -h "Volume" "$W/$BEST.log" "$W/incr.log" "$W/nochange.log" | sed 's/^/    /'
