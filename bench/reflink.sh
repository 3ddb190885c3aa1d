#!/usr/bin/env bash
# Reflink source benchmark (issue 14 item 3): an incremental send of an
# image on Btrfs or XFS after 1% of it changed must cost in proportion to
# the change, at least 10x less than reading the image in full (what a
# backup tool without change tracking, such as borg or restic, must do at
# least).
#
# For each file system in REFLINK_FS (default "btrfs xfs"): makes it on a
# loop device over a sparse file in BENCH_DIR, lays a Qubes file-reflink
# pool out in it with one image of REFLINK_SIZE_GIB GiB (default 4;
# bench/imagegen.py: zeros, text and random data), an archive beside it
# (internal:, outside the pool), and measures with a cold page cache when
# run as root:
#   * the full send (--source=reflink:POOL);
#   * REFLINK_REPEAT (default 3) incremental sends, each after 1% of the
#     image was overwritten (random 64 KiB writes, bench/imagegen.py mutate),
#     keeping the fastest;
#   * a send with no changes;
#   * the same run's baselines: dd bs=4M of the whole image (the machine's
#     read limit on that file), and an incremental send of the same image and
#     change as a dir: source (no change tracking: it reads the image and
#     compares hashes with the manifest).
# For each: wall time, CPU (sparsebak and its agent), rchar (every read and
# pread of sparsebak's process, its reaped agent's included: bench/rchar.py)
# and read_bytes (what reached the block layer). The latest session is
# received and checked by sha256 against the image. Prints a markdown
# table; docs/BENCHMARKS.md ("Reflink sources") quotes it by hand.
#
#   bench/reflink.sh                                 4 GiB, btrfs and xfs
#   REFLINK_SIZE_GIB=1 REFLINK_FS=xfs bench/reflink.sh
#
# Needs root (loop devices, mounts), mkfs.btrfs / mkfs.xfs. Environment:
# REFLINK_SIZE_GIB, REFLINK_FS, REFLINK_REPEAT, REFLINK_PCT (default 1),
# BENCH_DIR (default /var/tmp; holds the loop file, about 1.6x the image
# per file system, and the archives), BENCH_NO_BUILD=1, BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
SIZE_GIB=${REFLINK_SIZE_GIB:-4}
FSES=${REFLINK_FS:-btrfs xfs}
REPEAT=${REFLINK_REPEAT:-3}
PCT=${REFLINK_PCT:-1}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SB=$BIN/sparsebak

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'reflink bench: %s\n' "$*" >&2
	exit 1
}
[[ $(id -u) == 0 ]] || die "needs root (loop devices and mounts)"
for fs in $FSES; do
	command -v "mkfs.$fs" >/dev/null || die "mkfs.$fs is missing (tests/setup-host.sh installs it)"
done

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release --workspace -q)
fi
[[ -x $SB && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"
export SPARSEBAK_AGENT=$BIN/sparsebak-agent

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-reflink.XXXXXX")
LOOP=
MNT=
cleanup() {
	[[ -z $MNT ]] || umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	[[ -z $LOOP ]] || losetup -d "$LOOP" 2>/dev/null || true
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
SIZE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 2**30) // 65536 * 65536)" "$SIZE_GIB")
MP=$(stat -c %m "$W")

DROPPED=yes
cold() {
	sync
	{ echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || DROPPED=no
}
# measure NAME CMD...: CMD with a cold cache, figures in $W/NAME.env.
measure() {
	local name=$1
	shift
	cold
	python3 "$BENCH/rchar.py" "$W/$name.env" "$@" >"$W/$name.log" 2>&1 ||
		{ cat "$W/$name.log" >&2; die "$name failed"; }
	say "$name: $(paste -sd ' ' "$W/$name.env")"
}
get() { sed -n "s/^$2=//p" "$W/$1.env"; }
faster() { python3 -c "import sys; sys.exit(not float(sys.argv[1]) < float(sys.argv[2]))" "$1" "$2"; }

# archive NAME SOURCE: a fresh archive and meta dir for SOURCE, as the env.
archive() {
	mkdir -p "$W/$1.archive"
	export SPARSEBAK_META_DIR=$W/$1.meta
	"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$W/$1.archive")" \
		--source="$2" --encrypt=off >/dev/null
}

ROWS=$W/rows.md
: >"$ROWS"
row() { # row FS LABEL NAME
	python3 - "$1" "$2" "$(get "$3" wall)" "$(get "$3" user)" "$(get "$3" sys)" \
		"$(get "$3" rchar)" "$(get "$3" read_bytes)" "$(get "dd.$1" wall)" <<'PY' >>"$ROWS"
import sys
fs, label, wall, user, sys_, rchar, rb, dd = sys.argv[1:]
mib = lambda b: f"{int(b) / 2**20:.1f} MiB"
print(f"| {fs} | {label} | {float(wall):.2f} | {float(user) + float(sys_):.2f} "
      f"| {mib(rchar)} | {mib(rb)} | {float(dd) / float(wall):.1f}x |")
PY
}

bench_fs() {
	local fs=$1 i best=
	say "$fs: a file system of $((SIZE * 16 / 10 >> 20)) MiB on a loop device"
	truncate -s $(((SIZE * 16 / 10 >> 20 << 20) + (512 << 20))) "$W/$fs.fs"
	LOOP=$(losetup -f --show "$W/$fs.fs")
	"mkfs.$fs" -q -f "$LOOP" >/dev/null
	MNT=$W/$fs.pool
	mkdir -p "$MNT"
	mount "$LOOP" "$MNT"
	mkdir -p "$MNT/appvms/bench"
	local img=$MNT/appvms/bench/private.img
	python3 "$BENCH/imagegen.py" create "$img" "$SIZE" 1 >&2
	# The dir: baseline reads the same file through a hard link.
	mkdir -p "$MNT/plain"
	ln "$img" "$MNT/plain/img"
	archive "$fs.dirsrc" "dir:$MNT/plain"
	"$SB" add img >/dev/null
	"$SB" -u send img >/dev/null
	archive "$fs" "reflink:$MNT"
	"$SB" add vm-bench-private >/dev/null
	measure "full.$fs" "$SB" -u send vm-bench-private
	for ((i = 1; i <= REPEAT; i++)); do
		python3 "$BENCH/imagegen.py" mutate "$img" "$PCT" "$((i * 7))" >&2
		measure "incr.$fs.$i" "$SB" -u send vm-bench-private
		grep -q "incremental session" "$W/incr.$fs.$i.log" || die "no incremental session: $(cat "$W/incr.$fs.$i.log")"
		if [[ -z $best ]] || faster "$(get "incr.$fs.$i" wall)" "$(get "$best" wall)"; then
			best=incr.$fs.$i
		fi
	done
	measure "nochange.$fs" "$SB" -u send vm-bench-private
	grep -q "no changes" "$W/nochange.$fs.log" || die "the last send found changes"
	measure "dd.$fs" dd if="$img" of=/dev/null bs=4M status=none
	# The same image, as changed since the dir: archive's full send
	# (REPEAT x PCT %), without change tracking: read and compare it all.
	export SPARSEBAK_META_DIR=$W/$fs.dirsrc.meta
	measure "dirsrc.$fs" "$SB" -u send img
	say "$fs: checking the received image"
	export SPARSEBAK_META_DIR=$W/$fs.meta
	"$SB" -u receive vm-bench-private --save-to="$W/received" >/dev/null
	[[ $(sha256sum <"$W/received" | cut -d' ' -f1) == $(sha256sum <"$img" | cut -d' ' -f1) ]] ||
		die "$fs: the received image differs from the image"
	rm -f "$W/received"
	row "$fs" "full send" "full.$fs"
	row "$fs" "incremental send after ${PCT}% changed (best of $REPEAT)" "$best"
	row "$fs" "send with no changes" "nochange.$fs"
	row "$fs" "baseline: dir: source send of the same image (no change tracking)" "dirsrc.$fs"
	row "$fs" "baseline: dd bs=4M of the whole image" "dd.$fs"
	grep -h "Volume" "$W/$best.log" | sed "s/^/    $fs: /" >>"$W/reports"
	umount "$MNT"
	MNT=
	losetup -d "$LOOP"
	LOOP=
	rm -f "$W/$fs.fs"
}

for fs in $FSES; do bench_fs "$fs"; done
echo
echo "$(date -u +%Y-%m-%d), commit $(cd "$ROOT" && git rev-parse --short HEAD); command:" \
	"\`$(env | grep -E '^(REFLINK_|BENCH_DIR)' | sort | tr '\n' ' ')bench/reflink.sh\`;" \
	"loop devices over $(findmnt -n -o FSTYPE -T "$W"), $(nproc) CPUs, caches dropped: $DROPPED;" \
	"image $SIZE bytes."
echo
echo "| fs | operation | wall s | CPU s | read (rchar) | read from disk (read_bytes) | dd of the image / this |"
echo "|---|---|---:|---:|---:|---:|---:|"
cat "$ROWS"
echo
cat "$W/reports"
