#!/usr/bin/env bash
# Prune benchmark (a benchmark, not a test: it takes minutes).
#
# For each volume size, builds an archive of 1 full + PRUNE_SESSIONS + 1
# incremental sessions (each incremental changes PRUNE_CHANGED random 64 KiB
# chunks), then measures:
#   A. prune of the PRUNE_SESSIONS incremental sessions in one run (range
#      --session=DT1,DT2, the full session kept): cost should follow the
#      chunks in the pruned sessions, not the volume size;
#   B. prune of everything before the newest session (--keep-last=1), which
#      includes the full session, so every chunk of the volume moves.
# Machine limit, measured in the same run on the same file system: the time
# to rename the same number of chunk files between two fan-out trees and
# syncfs (python3 os.rename), i.e. the floor for "merge by renaming".
# Also reported: each prune as a fraction of a full send of the volume.
# Every prune is checked: the remaining sessions restore the bytes they were
# sent from (sha256), before and after.
#
#   bench/prune.sh                          sizes 128 MiB and 1024 MiB
#   PRUNE_SIZES_MIB="256" bench/prune.sh
#
# Environment: PRUNE_SIZES_MIB (default "128 1024"), PRUNE_SESSIONS (100),
# PRUNE_CHANGED (64), BENCH_DIR (default /var/tmp), BENCH_DOCS=0 (do not
# rewrite the prune section of docs/BENCHMARKS.md), BENCH_NO_BUILD=1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SIZES=${PRUNE_SIZES_MIB:-128 1024}
N=${PRUNE_SESSIONS:-100}
CHANGED=${PRUNE_CHANGED:-64}
say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'prune bench: %s\n' "$*" >&2
	exit 1
}
((N >= 2)) || die "PRUNE_SESSIONS must be at least 2"

if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release --workspace -q)
fi
[[ -x $BIN/sparsebak && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-prune-bench.XXXXXX")
trap '[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$W"' EXIT
export SPARSEBAK_AGENT=$BIN/sparsebak-agent
SB=$BIN/sparsebak
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }

# rename_floor DIR COUNT: seconds to rename COUNT files from one fan-out tree
# into another and syncfs, on DIR's file system.
rename_floor() {
	python3 - "$1" "$2" <<'EOF'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
names = []
os.makedirs(dst)
for i in range(n):
    a = f"{i * 65536:016x}"
    os.makedirs(os.path.join(src, a[:9]), exist_ok=True)
    with open(os.path.join(src, a[:9], "x" + a), "wb") as f:
        f.write(b"x" * 100)
    names.append(a)
os.sync()
t = time.monotonic()
for a in names:
    sub = os.path.join(dst, a[:9])
    if not os.path.isdir(sub):
        os.mkdir(sub)
    os.rename(os.path.join(src, a[:9], "x" + a), os.path.join(sub, "x" + a))
fd = os.open(dst, os.O_RDONLY)
os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
os.close(fd)
print(f"{time.monotonic() - t:.3f}")
EOF
}

# change IMG COUNT SEED: overwrite COUNT random 64 KiB chunks with random data.
change() {
	python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
p, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(seed)
chunks = os.path.getsize(p) // 65536
with open(p, "r+b") as f:
    for c in r.sample(range(chunks), min(n, chunks)):
        f.seek(c * 65536)
        f.write(r.randbytes(65536))
EOF
}

ROWS=()
for mib in $SIZES; do
	say "volume of $mib MiB: 1 full + $N + 1 incremental sends of $CHANGED changed chunks"
	V=$W/v$mib
	mkdir -p "$V/src" "$V/dest" "$V/meta"
	export SPARSEBAK_META_DIR=$V/meta
	head -c $((mib << 20)) /dev/urandom >"$V/src/vol.img"
	MP=$(findmnt -n -o TARGET -T "$V/dest")
	$SB arch-init -u --source="dir:$V/src" --dest="internal:$MP" \
		--subdir="$(realpath --relative-to="$MP" "$V/dest")" --encrypt=off >/dev/null
	$SB add vol.img >/dev/null
	sync
	t0=$(now)
	$SB send -u >/dev/null
	t1=$(now)
	full=$(secs "$t0" "$t1")
	declare -A SHA=()
	for i in $(seq 1 $((N + 1))); do
		change "$V/src/vol.img" "$CHANGED" "$i"
		$SB send -u >/dev/null
		last=$($SB list vol.img --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["name"][2:])')
		SHA[$last]=$(sha256sum <"$V/src/vol.img" | cut -d' ' -f1)
	done
	mapfile -t S < <($SB list vol.img --json | python3 -c 'import json,sys; [print(s["name"][2:]) for s in json.load(sys.stdin)]')
	((${#S[@]} == N + 2)) || die "expected $((N + 2)) sessions, got ${#S[@]}"
	check() { # every remaining incremental session restores its own bytes
		local s got
		for s in $($SB list vol.img --json | python3 -c 'import json,sys; [print(s["name"][2:]) for s in json.load(sys.stdin)][1:]'); do
			[[ -n ${SHA[$s]:-} ]] || continue
			$SB receive -u vol.img --session="$s" --save-to="$V/r.img" >/dev/null
			got=$(sha256sum <"$V/r.img" | cut -d' ' -f1)
			rm -f "$V/r.img"
			[[ $got == "${SHA[$s]}" ]] || die "session $s restores wrong bytes after prune"
		done
	}
	sync
	t0=$(now)
	outA=$($SB prune -u vol.img --session="${S[1]},${S[N]}")
	t1=$(now)
	pruneA=$(secs "$t0" "$t1")
	movesA=$(sed -n 's/.*: \([0-9]*\) chunk files moved.*/\1/p' <<<"$outA")
	check
	sync
	t0=$(now)
	outB=$($SB prune -u vol.img --keep-last=1)
	t1=$(now)
	pruneB=$(secs "$t0" "$t1")
	movesB=$(sed -n 's/.*: \([0-9]*\) chunk files moved.*/\1/p' <<<"$outB")
	check
	floorA=$(rename_floor "$V/floorA" "$movesA")
	floorB=$(rename_floor "$V/floorB" "$movesB")
	ROWS+=("$mib|$full|$N|$movesA|$pruneA|$floorA|$movesB|$pruneB|$floorB")
	rm -rf "$V"
done

TABLE=$(
	printf '| volume | full send s | A: prune %s incrementals: chunk files moved | s | rename floor s | ratio to floor | ratio to full send | B: then prune the full session: moved | s | rename floor s | ratio to floor | ratio to full send |\n' "$N"
	printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	for r in "${ROWS[@]}"; do
		IFS='|' read -r mib full n ma pa fa mb pb fb <<<"$r"
		python3 - "$mib" "$full" "$ma" "$pa" "$fa" "$mb" "$pb" "$fb" <<'EOF'
import sys
mib, full, ma, pa, fa, mb, pb, fb = sys.argv[1:]
f = lambda x: float(x)
print(f"| {mib} MiB | {f(full):.2f} | {ma} | {f(pa):.2f} | {f(fa):.2f} | {f(pa)/max(f(fa),1e-3):.1f} | {f(pa)/f(full):.3f} "
      f"| {mb} | {f(pb):.2f} | {f(fb):.2f} | {f(pb)/max(f(fb),1e-3):.1f} | {f(pb)/f(full):.3f} |")
EOF
	done
)
echo "$TABLE"

if [[ ${BENCH_DOCS:-1} != 0 ]]; then
	commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	fs=$(findmnt -n -o FSTYPE -T "$W")
	SECTION="<!-- prune.sh results: BEGIN (generated by bench/prune.sh; edits here are overwritten) -->
$(date -u +%F), commit $commit; command: \`PRUNE_SIZES_MIB=\"$SIZES\" PRUNE_SESSIONS=$N PRUNE_CHANGED=$CHANGED bench/prune.sh\`; file system: $fs, internal: destination; $(nproc) CPUs.

$TABLE
<!-- prune.sh results: END -->"
	python3 - "$ROOT/docs/BENCHMARKS.md" "$SECTION" <<'EOF'
import re, sys
p, section = sys.argv[1], sys.argv[2]
doc = open(p).read()
pat = re.compile(r"<!-- prune\.sh results: BEGIN.*?<!-- prune\.sh results: END -->", re.S)
if pat.search(doc):
    doc = pat.sub(lambda m: section, doc)
else:
    doc = doc.rstrip("\n") + "\n\n## Prune\n\n" + section + "\n"
open(p, "w").write(doc)
EOF
	say "docs/BENCHMARKS.md updated"
fi
