#!/usr/bin/env bash
# Terabyte scale (issue 15, item 5): a sparse image of TB_SIZE_GIB GiB
# (default 1024) holding TB_DATA_MIB MiB (default 2048) of data goes through
# a full send, an incremental send (1 % of the data rewritten), list,
# receive of each session (into a sparse file, sha256-checked against the
# image as it was sent), verify, and prune of the oldest session. For each:
# wall time, peak RSS of sparsebak and, separately, of its agent (GNU time
# around each; the agent through an SPARSEBAK_AGENT wrapper), and the size
# of the manifests. The same is done for a TB_SMALL_GIB GiB image (default
# 64) holding the same data, so the table shows what the volume size itself
# costs once holes are skipped.
#
#   bench/terabyte.sh                       1 TiB and 64 GiB, 2 GiB of data
#   TB_SIZE_GIB=256 TB_DATA_MIB=512 bench/terabyte.sh
#
# Environment: TB_SIZE_GIB, TB_SMALL_GIB (0 skips the small image),
# TB_DATA_MIB, BENCH_DIR (default /var/tmp), BENCH_NO_BUILD=1, BENCH_KEEP=1.
# Needs GNU time (/usr/bin/time). Prints a markdown table; docs/BENCHMARKS.md
# ("Terabyte volumes") quotes it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release
SB=$BIN/sparsebak
DATA_MIB=${TB_DATA_MIB:-2048}
SIZES=("${TB_SIZE_GIB:-1024}")
[[ ${TB_SMALL_GIB:-64} == 0 ]] || SIZES+=("${TB_SMALL_GIB:-64}")

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'terabyte bench: %s\n' "$*" >&2
	exit 1
}
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is needed: apt-get install time"
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	say "building release binaries"
	(cd "$ROOT" && cargo build --release --workspace -q)
fi
[[ -x $SB && -x $BIN/sparsebak-agent ]] || die "no release binaries in $BIN"

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/sparsebak-tb.XXXXXX")
cleanup() {
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then say "kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
MP=$(stat -c %m "$W")

# The agent, under GNU time: each run appends its peak RSS (KiB) to $W/agent.rss.
cat >"$W/agent" <<EOF
#!/bin/sh
exec /usr/bin/time -f '%M' -a -o "$W/agent.rss" "$BIN/sparsebak-agent" "\$@"
EOF
chmod 755 "$W/agent"
export SPARSEBAK_AGENT=$W/agent

# image PATH GIB: a hole of GIB GiB holding DATA_MIB MiB of random data in
# 1 MiB pieces at evenly spread, 4 KiB-aligned offsets (the same seed, so
# both sizes hold the same bytes).
image() {
	python3 - "$1" "$2" "$DATA_MIB" <<'PY'
import random, sys
path, size, pieces = sys.argv[1], int(sys.argv[2]) * 2**30, int(sys.argv[3])
rnd = random.Random(15)
with open(path, "wb") as f:
    f.truncate(size)
    step = size // pieces
    for i in range(pieces):
        f.seek(min(i * step + 12288, size - 2**20) // 4096 * 4096)
        f.write(rnd.randbytes(2**20))
PY
}

# rewrite PATH: 1 % of the data pieces get new bytes.
rewrite() {
	python3 - "$1" "$DATA_MIB" <<'PY'
import os, random, sys
path, pieces = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
step = size // pieces
with open(path, "r+b") as f:
    for i in range(0, pieces, 100):
        f.seek(min(i * step + 12288, size - 2**20) // 4096 * 4096)
        f.write(os.urandom(2**20))
PY
}

# same A B: equal sizes and bytes, comparing only where either file has
# data (SEEK_DATA/SEEK_HOLE; holes read as zeros), so it costs the data,
# not the size.
same() {
	python3 - "$1" "$2" <<'PY'
import os, sys
def regions(fd, size):
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        yield start, end
        off = end
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(a).st_size
if os.fstat(b).st_size != size:
    sys.exit(f"sizes differ: {size} and {os.fstat(b).st_size}")
for fd in (a, b):
    for start, end in regions(fd, size):
        off = start
        while off < end:
            n = min(end - off, 8 << 20)
            if os.pread(a, n, off) != os.pread(b, n, off):
                sys.exit(f"bytes differ in [{off}, {off + n})")
            off += n
PY
}

# run TAG NAME ARGS...: sparsebak ARGS; wall s, dom0 and agent peak RSS
# (MiB) appended to $W/TAG.tsv as NAME.
run() {
	local tag=$1 name=$2
	shift 2
	: >"$W/agent.rss"
	/usr/bin/time -f '%e %M' -o "$W/time" "$SB" "$@" >"$W/$tag.$name.log" 2>&1 ||
		{ cat "$W/$tag.$name.log" >&2; die "$tag $name failed"; }
	local wall rss agent
	read -r wall rss <"$W/time"
	agent=$(sort -n "$W/agent.rss" | tail -1)
	printf '%s\t%s\t%s\t%s\n' "$name" "$wall" "$((rss / 1024))" "$((${agent:-0} / 1024))" >>"$W/$tag.tsv"
	say "$tag $name: ${wall}s, sparsebak $((rss / 1024)) MiB, agent $((${agent:-0} / 1024)) MiB"
}

for gib in "${SIZES[@]}"; do
	tag=$gib
	src=$W/src-$gib
	mkdir -p "$src" "$W/archive-$gib"
	export SPARSEBAK_META_DIR=$W/meta-$gib
	say "$gib GiB image with $DATA_MIB MiB of data"
	image "$src/vol" "$gib"
	cp --sparse=always "$src/vol" "$W/first"
	"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath --relative-to="$MP" "$W/archive-$gib")" \
		--source="dir:$src" --encrypt=off >/dev/null
	"$SB" add vol >/dev/null
	: >"$W/$tag.tsv"
	run "$tag" "full send" -u send vol
	sleep 1
	rewrite "$src/vol"
	run "$tag" "incremental send (1 % of the data)" -u send vol
	run "$tag" "list vol" list vol
	mapfile -t ses < <("$SB" list vol --json | python3 -c 'import json,sys; [print(s["name"][2:]) for s in json.load(sys.stdin)]')
	run "$tag" "receive (first session)" -u receive vol --session="${ses[0]}" --save-to="$W/out"
	same "$W/out" "$W/first" || die "$tag: the first session restored differently"
	rm -f "$W/out" "$W/first"
	run "$tag" "receive (second session)" -u receive vol --save-to="$W/out"
	same "$W/out" "$src/vol" || die "$tag: the second session restored differently"
	rm -f "$W/out"
	run "$tag" "verify (latest)" verify vol
	manifest=$(stat -c %s "$SPARSEBAK_META_DIR/volumes/vol/S_${ses[0]}/manifest")
	run "$tag" "prune the oldest session" -u prune vol --session="${ses[0]}"
	echo "manifest_first=$manifest" >"$W/$tag.env"
	rm -rf "$src" "$W/archive-$gib" "$SPARSEBAK_META_DIR"
done

echo
echo "$(date -u +%Y-%m-%d), commit $(cd "$ROOT" && git rev-parse --short HEAD); command:" \
	"\`$(env | grep -E '^(TB_|BENCH_DIR)' | sort | tr '\n' ' ')bench/terabyte.sh\`;" \
	"$(findmnt -n -o FSTYPE -T "$W"), $(nproc) CPUs, warm cache; $DATA_MIB MiB of data in each image;" \
	"first manifest: $(for g in "${SIZES[@]}"; do printf '%s GiB: %s MiB; ' "$g" "$(($(sed -n 's/^manifest_first=//p' "$W/$g.env") >> 20))"; done)"
echo
header="| operation |"
sep="|---|"
for g in "${SIZES[@]}"; do
	header+=" $g GiB: wall s | sparsebak MiB | agent MiB |"
	sep+="---:|---:|---:|"
done
echo "$header"
echo "$sep"
paste "$W/${SIZES[0]}.tsv" $([[ ${#SIZES[@]} -gt 1 ]] && echo "$W/${SIZES[1]}.tsv") |
	awk -F'\t' '{ printf "| %s |", $1; for (i = 2; i <= NF; i += 4) printf " %s | %s | %s |", $i, $(i+1), $(i+2); print "" }'
