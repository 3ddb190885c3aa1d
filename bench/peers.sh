#!/usr/bin/env bash
# sparsebak side by side with borg and restic (a benchmark, not a test: it
# takes tens of minutes).
#
# One volume image (bench/imagegen.py: zeros, text-like and random data) and
# two changed versions of it (+1 %, then +10 % of 64 KiB blocks rewritten)
# are made once; every tool then backs up exactly the same bytes, at the
# same path, with the same cold-cache method (page cache dropped before
# every measured command). For each tool and each of BENCH_REPEAT rounds, in
# a fresh repository:
#
#   full       first backup of the image
#   incr1      backup after 1 % changed
#   incr10     backup after a further 10 % changed
#   nochange   backup with nothing changed
#   receive    restore the newest backup to a file (sha256 checked against
#              the image it came from; a mismatch stops the run)
#   verify     read and check all stored data (sparsebak verify;
#              borg check --verify-data; restic check --read-data)
#   prune      remove the oldest backup and reclaim its space (sparsebak
#              prune; borg delete + compact; restic forget + prune)
#
# and the machine's limits on the same file in the same run: dd read,
# zstd -3 -T0, dd write. The table shows the median of the rounds (and the
# range); docs/BENCHMARKS.md gets it between the peers.sh markers.
#
# Settings: borg 1.2 with no encryption, fixed 4 MiB chunks and zstd level 3
# (its fastest fair setting for images); restic with its defaults (it always
# encrypts; its compression default is "auto"); sparsebak with its defaults.
#
#   bench/peers.sh                         2 GiB image in /var/tmp, 3 rounds
#   BENCH_SIZE_GIB=0.25 BENCH_REPEAT=1 BENCH_DOCS=0 bench/peers.sh   quick try
#
# Environment: BENCH_SIZE_GIB (default 2), BENCH_REPEAT (default 3),
# BENCH_DIR (default /var/tmp; needs about 12 times the size free),
# BENCH_SEED, BENCH_DOCS=0 (do not touch docs/BENCHMARKS.md),
# BENCH_KEEP=1, BENCH_NO_BUILD=1, BENCH_TOOLS (default "sparsebak borg
# restic"), and bench/lib.sh's BENCH_NICE, BENCH_QUIET_WAIT, BENCH_QUIET_PCT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
SIZE_GIB=${BENCH_SIZE_GIB:-2}
SEED=${BENCH_SEED:-1}
REPEAT=${BENCH_REPEAT:-3}
TOOLS=${BENCH_TOOLS:-sparsebak borg restic}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
export BENCH_THREADS=0

need /usr/bin/time time
need zstd zstd
need python3 python3
need borg borgbackup
need restic restic

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release -p sparsebak -p sparsebak-agent -q)
fi
[[ -x $BIN/sparsebak && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"

SIZE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 2**30) // 65536 * 65536)" "$SIZE_GIB")
((SIZE > 0)) || die "BENCH_SIZE_GIB=$SIZE_GIB is too small"
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-peers.XXXXXX")
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
FREE=$(df -B1 --output=avail "$W" | tail -1)
NEED=$((12 * SIZE + (1 << 30)))
((FREE > NEED)) || die "$W has $((FREE >> 20)) MiB free; $((NEED >> 20)) MiB needed"

R=$W/results.env
bench_init
put command "$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')bench/peers.sh"
put git "$(cd "$ROOT" && git rev-parse --short HEAD)"
put size "$SIZE"
put repeat "$REPEAT"
put tools "$TOOLS"
put borg_version "$(borg --version)"
put restic_version "$(restic version | cut -d' ' -f1-2)"
put zstd_version "$(zstd --version | head -1 | sed 's/^\*\*\* //; s/,.*//')"

say "generating a $SIZE_GIB GiB image and its two changed versions"
python3 "$BENCH/imagegen.py" create "$W/img.0" "$SIZE" "$SEED" >&2
cp "$W/img.0" "$W/img.1"
python3 "$BENCH/imagegen.py" mutate "$W/img.1" 1 "$SEED" >&2
cp "$W/img.1" "$W/img.2"
python3 "$BENCH/imagegen.py" mutate "$W/img.2" 10 "$((SEED + 7))" >&2
SHA2=$(sha256sum <"$W/img.2" | cut -d' ' -f1)

say "machine limits on the same file"
WRITE_COUNT=$(((SIZE + (4 << 20) - 1) / (4 << 20)))
put write_bytes $((WRITE_COUNT * (4 << 20)))
for ((i = 1; i <= REPEAT; i++)); do
	measure "dd_read#$i" dd if="$W/img.0" of=/dev/null bs=4M
	# shellcheck disable=SC2016 # $1 is expanded by the inner bash
	measure "zstd#$i" bash -c 'zstd -q -3 -T0 -c "$1" >/dev/null' _ "$W/img.0"
	measure "dd_write#$i" dd if=/dev/zero of="$W/ddwrite" bs=4M count="$WRITE_COUNT" conv=fdatasync
	rm -f "$W/ddwrite"
	# The disk without the page cache: in a VM, a buffered dd's copy into
	# fresh page-cache pages can cost more than the disk (first touch of
	# guest memory), so the target's baseline is shown with this beside it.
	measure "dd_write_direct#$i" dd if=/dev/zero of="$W/ddwrite" bs=4M count="$WRITE_COUNT" oflag=direct conv=fdatasync
	rm -f "$W/ddwrite"
done

SRC=$W/src
VOL=vol.img
mkdir -p "$SRC"
# place N: the source file takes version N's bytes, in place (same inode, as
# a volume changes under a backup tool); not measured.
place() {
	cp "$W/img.$1" "$SRC/$VOL"
	sync
}
# check_restore FILE: the restored newest backup must equal version 2.
check_restore() {
	local got
	got=$(sha256sum <"$1" | cut -d' ' -f1)
	[[ $got == "$SHA2" ]] || die "$tool round $i: restored image differs from the source: $got, expected $SHA2"
	rm -f "$1"
}

# --- sparsebak -------------------------------------------------------------
round_sparsebak() {
	local sb=$BIN/sparsebak mp oldest
	mp=$(stat -c %m "$W")
	export SPARSEBAK_AGENT SPARSEBAK_META_DIR=$W/sb.meta
	SPARSEBAK_AGENT=$(agent_wrapper "$BIN")
	rm -rf "$W/sb.arch" "$SPARSEBAK_META_DIR"
	mkdir -p "$W/sb.arch" "$SPARSEBAK_META_DIR"
	"$sb" arch-init --dest="internal:$mp" --subdir="$(realpath --relative-to="$mp" "$W/sb.arch")" \
		--source="dir:$SRC" --encrypt=off >/dev/null
	"$sb" add "$VOL" >/dev/null
	place 0 && measure "sparsebak.full#$i" "$sb" -u send "$VOL"
	sleep 1 && place 1 && measure "sparsebak.incr1#$i" "$sb" -u send "$VOL"
	sleep 1 && place 2 && measure "sparsebak.incr10#$i" "$sb" -u send "$VOL"
	sleep 1 && measure "sparsebak.nochange#$i" "$sb" -u send "$VOL"
	put "sparsebak.size#$i" "$(du -sb "$W/sb.arch" | cut -f1)"
	measure "sparsebak.receive#$i" "$sb" -u receive "$VOL" --save-to="$W/restored"
	check_restore "$W/restored"
	measure "sparsebak.verify#$i" "$sb" -u verify "$VOL"
	oldest=$("$sb" list "$VOL" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["name"][2:])')
	measure "sparsebak.prune#$i" "$sb" -u prune "$VOL" --session="$oldest"
	rm -rf "$W/sb.arch" "$SPARSEBAK_META_DIR"
}

# --- borg ------------------------------------------------------------------
round_borg() {
	export BORG_REPO=$W/borg.repo BORG_BASE_DIR=$W/borg.base
	export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
	rm -rf "$BORG_REPO" "$BORG_BASE_DIR"
	borg init -e none >/dev/null
	local create=(borg create --chunker-params fixed,4194304 --compression zstd,3)
	cd "$SRC"
	place 0 && measure "borg.full#$i" "${create[@]}" ::s0 "$VOL"
	place 1 && measure "borg.incr1#$i" "${create[@]}" ::s1 "$VOL"
	place 2 && measure "borg.incr10#$i" "${create[@]}" ::s2 "$VOL"
	measure "borg.nochange#$i" "${create[@]}" ::s3 "$VOL"
	put "borg.size#$i" "$(du -sb "$BORG_REPO" | cut -f1)"
	mkdir -p "$W/out" && cd "$W/out"
	measure "borg.receive#$i" borg extract --sparse ::s3
	check_restore "$W/out/$VOL"
	measure "borg.verify#$i" borg check --verify-data
	measure "borg.prune#$i" bash -c 'borg delete ::s0 && borg compact'
	cd "$W"
	rm -rf "$BORG_REPO" "$BORG_BASE_DIR"
}

# --- restic ----------------------------------------------------------------
round_restic() {
	export RESTIC_REPOSITORY=$W/restic.repo RESTIC_PASSWORD=bench XDG_CACHE_HOME=$W/restic.cache
	rm -rf "$RESTIC_REPOSITORY" "$XDG_CACHE_HOME"
	restic init -q
	local oldest
	cd "$SRC"
	place 0 && measure "restic.full#$i" restic backup -q --host bench "$VOL"
	place 1 && measure "restic.incr1#$i" restic backup -q --host bench "$VOL"
	place 2 && measure "restic.incr10#$i" restic backup -q --host bench "$VOL"
	measure "restic.nochange#$i" restic backup -q --host bench "$VOL"
	put "restic.size#$i" "$(du -sb "$RESTIC_REPOSITORY" | cut -f1)"
	measure "restic.receive#$i" restic restore -q latest --target "$W/out"
	# restic restores under the path it backed up (absolute in 0.14).
	check_restore "$(find "$W/out" -name "$VOL" -type f | head -1)"
	rm -rf "$W/out"
	measure "restic.verify#$i" restic check -q --read-data
	oldest=$(restic snapshots --json | python3 -c 'import json,sys; print(sorted(json.load(sys.stdin), key=lambda s: s["time"])[0]["id"])')
	measure "restic.prune#$i" bash -c 'restic forget -q "$1" && restic prune -q' _ "$oldest"
	cd "$W"
	rm -rf "$RESTIC_REPOSITORY" "$XDG_CACHE_HOME"
}

for ((i = 1; i <= REPEAT; i++)); do
	for tool in $TOOLS; do
		say "$tool, round $i of $REPEAT"
		"round_$tool"
	done
done
bench_finish

DOCS=()
[[ ${BENCH_DOCS:-1} == 0 ]] || DOCS=(--docs "$ROOT/docs/BENCHMARKS.md")
python3 "$BENCH/peers_report.py" "$R" "${DOCS[@]}"
