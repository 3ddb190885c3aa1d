#!/usr/bin/env bash
# sparsebak throughput benchmark (a benchmark, not a test: it takes minutes).
#
# Builds release binaries, generates a volume image of BENCH_SIZE_GIB GiB
# (zeros, text-like and random data) next to a fresh archive, measures this
# machine's limits on that same file (dd read, zstd -3 -T0, sha256sum, dd
# write), then sparsebak's full send, incremental send after a 1% change,
# receive and verify of an unencrypted archive (format 1), and full send,
# receive and verify of an encrypted one (format 2) in the same run, with
# their ratios; checks the received images' sha256 against the source;
# prints a markdown table and rewrites the results section of
# docs/BENCHMARKS.md.
#
# Then the cases where the cost must follow the data, not the volume
# (issue 14), each a script of its own that also runs alone and prints a
# markdown table that docs/BENCHMARKS.md quotes:
#   sparse          bench/sparse.sh: full send of a 64 GiB sparse image
#                   holding 8 MiB against its allocated data
#   reflink         bench/reflink.sh: incremental send of an image on Btrfs
#                   and XFS after 1% changed, against a full read of it
#                   (root: loop devices)
#   vm-provisioned  bench/vm-provisioned.sh: the first send of a thin LV in
#                   the qemu VM of tests/vm/ against its provisioned data
#
#   bench/bench.sh                        4 GiB in /var/tmp
#   BENCH_SIZE_GIB=1 bench/bench.sh       smaller (fractions allowed)
#
# Environment:
#   BENCH_SIZE_GIB  volume size in GiB (default 4)
#   BENCH_DIR       where the temporary directory goes (default /var/tmp); it
#                   should be a real disk, and it holds the image, the
#                   archives and the received image: (4 + BENCH_REPEAT) / 2
#                   times the size, plus 1 GiB, must be free
#   BENCH_SEED      image content seed (default 1)
#   BENCH_REPEAT    run every measurement but the incremental send that
#                   many times and keep the fastest (default 3)
#   BENCH_DOCS      0 = do not touch docs/BENCHMARKS.md (default 1)
#   BENCH_THREADS   0 = do not sample per-thread CPU time (default 1)
#   BENCH_KEEP      1 = keep the temporary directory
#   BENCH_NO_BUILD  1 = use the release binaries already built
#   BENCH_QUIET_WAIT, BENCH_QUIET_PCT  before each measurement, wait up to
#                   that many seconds (default 60) for the CPUs to be at
#                   most that busy (default 15%); others' CPU use during each
#                   measurement is reported either way
#   BENCH_CHUNK_FACTOR, BENCH_COMPRESSION  arch-init --chunk-factor and
#                   --compression (default: sparsebak's defaults)
#   BENCH_ENCRYPTED 0 = skip the encrypted archive (default 1)
#   BENCH_CASES     which of the cases above to run after the main
#                   measurements (default "sparse reflink"; vm-provisioned
#                   boots a VM and takes minutes; "" for none)
#   BENCH_NICE      run every measured command with priority nice N, in a
#                   session (autogroup) of its own (e.g. -10 on
#                   a machine shared with other work; default 0 = not)
#
# Cold measurements drop the page cache first (sync; echo 3 >
# /proc/sys/vm/drop_caches), which needs root; without it the figures are
# marked "caches NOT dropped" and are not comparable.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
SIZE_GIB=${BENCH_SIZE_GIB:-4}
SEED=${BENCH_SEED:-1}
REPEAT=${BENCH_REPEAT:-3}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

need /usr/bin/time time
need zstd zstd
need python3 python3
need sha256sum coreutils

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release --workspace -q)
fi
[[ -x $BIN/sparsebak && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"

SIZE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 2**30) // 65536 * 65536)" "$SIZE_GIB")
((SIZE > 0)) || die "BENCH_SIZE_GIB=$SIZE_GIB is too small"
PARENT=${BENCH_DIR:-/var/tmp}
W=$(mktemp -d "$PARENT/sparsebak-bench.XXXXXX")
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		say "kept $W"
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT

FREE=$(df -B1 --output=avail "$W" | tail -1)
# The image, REPEAT archives (at most about half the image each with this
# content), the received image, and 1 GiB to spare.
NEED=$(((6 + REPEAT) * SIZE / 2 + (1 << 30)))
((FREE > NEED)) || die "$W has $((FREE >> 20)) MiB free; $((NEED >> 20)) MiB needed"
R=$W/results.env # key=value lines for bench/report.py
bench_init
put command "$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')bench/bench.sh"
put git "$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- common dom0 vm-agent Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
put size "$SIZE"

SRC=$W/images
VOL=benchvol
IMG=$SRC/$VOL
mkdir -p "$SRC"
say "generating a $SIZE_GIB GiB image in $W"
python3 "$BENCH/imagegen.py" create "$IMG" "$SIZE" "$SEED" >&2

# best NAME: keep the fastest of NAME#1..NAME#REPEAT as NAME (best of N
# filters out the runs most disturbed by other work); NAME.walls lists all.
best() {
	python3 "$BENCH/report.py" --best "$R" "$1" "$REPEAT"
}

# repeat NAME CMD...: measure CMD REPEAT times, keep the best.
repeat() {
	local name=$1 i
	shift
	for ((i = 1; i <= REPEAT; i++)); do
		measure "$name#$i" "$@"
	done
	best "$name"
}

say "machine limits on the same file"
repeat dd_read dd if="$IMG" of=/dev/null bs=4M
# shellcheck disable=SC2016 # $1 is expanded by the inner bash
repeat zstd bash -c 'zstd -q -3 -T0 -c "$1" >/dev/null' _ "$IMG"
repeat sha256sum sha256sum "$IMG"
WRITE_COUNT=$(((SIZE + (4 << 20) - 1) / (4 << 20)))
put write_bytes $((WRITE_COUNT * (4 << 20)))
for ((i = 1; i <= REPEAT; i++)); do
	measure "dd_write#$i" dd if=/dev/zero of="$W/ddwrite" bs=4M count="$WRITE_COUNT" conv=fdatasync
	rm -f "$W/ddwrite"
done
best dd_write

say "sparsebak"
# The agent under its own /usr/bin/time, so its RSS is reported apart.
SPARSEBAK_AGENT=$(agent_wrapper "$BIN")
export SPARSEBAK_AGENT
MP=$(stat -c %m "$W")
SB=$BIN/sparsebak
ARCH_OPTS=(--encrypt=off)
[[ -z ${BENCH_CHUNK_FACTOR:-} ]] || ARCH_OPTS+=(--chunk-factor="$BENCH_CHUNK_FACTOR")
[[ -z ${BENCH_COMPRESSION:-} ]] || ARCH_OPTS+=(--compression="$BENCH_COMPRESSION")

# Each full send goes to a new archive and metadata dir, all kept until the
# end (deleting tens of thousands of files just before creating as many
# makes ext4's inode allocator skip the recently deleted ones, which costs
# the agent CPU). The last archive is used from then on.
for ((i = 1; i <= REPEAT; i++)); do
	ARCH=$W/archive.$i
	mkdir -p "$ARCH" "$W/meta.$i"
	export SPARSEBAK_META_DIR=$W/meta.$i
	"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$ARCH")" \
		--source="dir:$SRC" "${ARCH_OPTS[@]}" >"$W/arch-init.log"
	"$SB" add "$VOL" >/dev/null
	measure "full#$i" "$SB" -u send "$VOL"
done
best full
put archive "$(sed -n 's/.*(\(chunk size [^;]*\);.*/\1/p' "$W/arch-init.log")"
put full.stored_bytes "$(du -sb "$ARCH" | cut -f1)"
python3 "$BENCH/imagegen.py" mutate "$IMG" 1 "$SEED" >&2
measure incr "$SB" -u send "$VOL"
put incr.stored_bytes "$(($(du -sb "$ARCH" | cut -f1) - $(sed -n 's/^full.stored_bytes=//p' "$R")))"
for ((i = 1; i <= REPEAT; i++)); do
	rm -f "$W/received"
	measure "receive#$i" "$SB" -u receive "$VOL" --save-to="$W/received"
done
best receive
repeat verify "$SB" -u verify "$VOL"

say "checking the received image"
WANT=$(sha256sum <"$IMG" | cut -d' ' -f1)
GOT=$(sha256sum <"$W/received" | cut -d' ' -f1)
put sha256_source "$WANT"
put sha256_received "$GOT"
[[ $WANT == "$GOT" ]] || die "received image differs from the source: $GOT, expected $WANT"
rm -f "$W/received"

if [[ ${BENCH_ENCRYPTED:-1} == 1 ]]; then
	# The same image (as of the incremental send) into encrypted archives:
	# full send, receive and verify, each REPEAT times like the others.
	say "sparsebak, encrypted archive (format 2)"
	printf 'bench passphrase\n' >"$W/passphrase"
	ENC_OPTS=("${ARCH_OPTS[@]:1}" --passphrase-file="$W/passphrase")
	for ((i = 1; i <= REPEAT; i++)); do
		ARCH=$W/archive-enc.$i
		mkdir -p "$ARCH" "$W/meta-enc.$i"
		export SPARSEBAK_META_DIR=$W/meta-enc.$i
		"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$ARCH")" \
			--source="dir:$SRC" "${ENC_OPTS[@]}" >"$W/arch-init-enc.log"
		"$SB" add "$VOL" >/dev/null
		measure "full_enc#$i" "$SB" -u send "$VOL"
		((i == REPEAT)) || rm -rf "$ARCH"
	done
	best full_enc
	put full_enc.stored_bytes "$(du -sb "$ARCH" | cut -f1)"
	for ((i = 1; i <= REPEAT; i++)); do
		rm -f "$W/received"
		measure "receive_enc#$i" "$SB" -u receive "$VOL" --save-to="$W/received"
	done
	best receive_enc
	repeat verify_enc "$SB" -u verify "$VOL"
	GOT=$(sha256sum <"$W/received" | cut -d' ' -f1)
	put sha256_received_enc "$GOT"
	[[ $WANT == "$GOT" ]] || die "encrypted: received image differs from the source: $GOT, expected $WANT"
fi
bench_finish
put repeat "$REPEAT"

DOCS=()
[[ ${BENCH_DOCS:-1} == 0 ]] || DOCS=(--docs "$ROOT/docs/BENCHMARKS.md")
python3 "$BENCH/report.py" "$R" "${DOCS[@]}"

# The cost-follows-data cases (see the top), on the binaries built above.
for c in ${BENCH_CASES-sparse reflink}; do
	case $c in
	sparse | reflink | vm-provisioned)
		say "case $c: bench/$c.sh"
		BENCH_NO_BUILD=1 "$BENCH/$c.sh"
		;;
	*) die "BENCH_CASES: no case $c (sparse, reflink, vm-provisioned)" ;;
	esac
done
