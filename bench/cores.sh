#!/usr/bin/env bash
# How sparsebak's send, receive and verify scale with CPUs (a benchmark, not a
# test). The same image is sent, received and verified with the processes
# pinned (taskset) to 1 CPU, then to 2, ... up to this machine's count, which
# also sizes sparsebak's worker pools (rayon follows the CPU affinity);
# zstd -3 -T0 on the same file, under the same pinning, shows what the CPUs
# allow. Median of BENCH_REPEAT cold-cache runs; docs/BENCHMARKS.md gets the
# table between the cores.sh markers.
#
#   bench/cores.sh                                  2 GiB, 3 runs
#   BENCH_SIZE_GIB=0.25 BENCH_REPEAT=1 BENCH_DOCS=0 bench/cores.sh
#
# Environment: BENCH_SIZE_GIB (default 2), BENCH_REPEAT (default 3),
# BENCH_DIR (default /var/tmp), BENCH_SEED, BENCH_DOCS=0, BENCH_KEEP=1,
# BENCH_NO_BUILD=1, and bench/lib.sh's BENCH_NICE, BENCH_QUIET_*.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
SIZE_GIB=${BENCH_SIZE_GIB:-2}
REPEAT=${BENCH_REPEAT:-3}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
export BENCH_THREADS=0

need /usr/bin/time time
need zstd zstd
need taskset util-linux
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release -p sparsebak -p sparsebak-agent -q)
fi
[[ -x $BIN/sparsebak && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"

SIZE=$(python3 -c "import sys; print(int(float(sys.argv[1]) * 2**30) // 65536 * 65536)" "$SIZE_GIB")
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-cores.XXXXXX")
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
R=$W/results.env
bench_init
put command "$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')bench/cores.sh"
put git "$(cd "$ROOT" && git rev-parse --short HEAD)"
put size "$SIZE"
put repeat "$REPEAT"
NCPU=$(nproc)
put cpus "$(seq -s ' ' 1 "$NCPU")"

mkdir -p "$W/src"
python3 "$BENCH/imagegen.py" create "$W/src/vol.img" "$SIZE" "${BENCH_SEED:-1}" >&2
SB=$BIN/sparsebak
export SPARSEBAK_AGENT
SPARSEBAK_AGENT=$(agent_wrapper "$BIN")
MP=$(stat -c %m "$W")

for ((i = 1; i <= REPEAT; i++)); do
	for ((n = 1; n <= NCPU; n++)); do
		pin=(taskset -c "0-$((n - 1))")
		say "$n CPU(s), run $i of $REPEAT"
		# shellcheck disable=SC2016 # $1 is expanded by the inner bash
		measure "zstd.$n#$i" "${pin[@]}" bash -c 'zstd -q -3 -T0 -c "$1" >/dev/null' _ "$W/src/vol.img"
		export SPARSEBAK_META_DIR=$W/meta
		rm -rf "$W/arch" "$W/meta"
		mkdir -p "$W/arch" "$W/meta"
		"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$W/arch")" \
			--source="dir:$W/src" --encrypt=off >/dev/null
		"$SB" add vol.img >/dev/null
		measure "send.$n#$i" "${pin[@]}" "$SB" -u send vol.img
		measure "receive.$n#$i" "${pin[@]}" "$SB" -u receive vol.img --save-to="$W/restored"
		cmp "$W/src/vol.img" "$W/restored" || die "$n CPU(s): the restored image differs from the source"
		rm -f "$W/restored"
		measure "verify.$n#$i" "${pin[@]}" "$SB" -u verify vol.img
	done
done
bench_finish

DOCS=()
[[ ${BENCH_DOCS:-1} == 0 ]] || DOCS=(--docs "$ROOT/docs/BENCHMARKS.md")
python3 "$BENCH/cores_report.py" "$R" "${DOCS[@]}"
