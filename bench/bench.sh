#!/usr/bin/env bash
# sparsebak throughput benchmark (a benchmark, not a test: it takes minutes).
#
# Builds release binaries, generates a volume image of BENCH_SIZE_GIB GiB
# (zeros, text-like and random data) next to a fresh archive, measures this
# machine's limits on that same file (dd read, zstd -3 -T0, sha256sum, dd
# write), then sparsebak's full send, incremental send after a 1% change,
# receive and verify; checks the received image's sha256 against the source;
# prints a markdown table and rewrites the results section of
# docs/BENCHMARKS.md.
#
# Sparse images (a full send must cost in proportion to the data, not the
# image size) are measured apart, in seconds: bench/sparse.sh.
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

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

need() { # need COMMAND APT-PACKAGE
	command -v "$1" >/dev/null 2>&1 && return
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing $2"
		apt-get install -y -q "$2" >/dev/null || die "cannot install $2"
	else
		die "$1 is missing (package $2)"
	fi
}
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
NEED=$(((4 + REPEAT) * SIZE / 2 + (1 << 30)))
((FREE > NEED)) || die "$W has $((FREE >> 20)) MiB free; $((NEED >> 20)) MiB needed"
FSTYPE=$(findmnt -n -o FSTYPE -T "$W")
FSDEV=$(findmnt -n -o SOURCE -T "$W")
[[ $FSTYPE != tmpfs ]] || say "WARNING: $W is on tmpfs; the figures will not mean much"

# BENCH_NICE: with autogroup scheduling (kernel.sched_autogroup_enabled),
# nice only ranks processes within their session, so the measured command
# gets a session of its own whose autogroup gets the same nice value.
NICE=()
if [[ ${BENCH_NICE:-0} != 0 ]]; then
	cat >"$W/prio" <<'EOF'
#!/bin/sh
echo "$BENCH_NICE" >/proc/self/autogroup 2>/dev/null
exec nice -n "$BENCH_NICE" "$@"
EOF
	chmod +x "$W/prio"
	NICE=(setsid -w "$W/prio")
fi
R=$W/results.env # key=value lines for bench/report.py
put() { printf '%s=%s\n' "$1" "$2" >>"$R"; }

DROPPED=yes
cold() {
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		DROPPED=no
	fi
}

# busy_jiffies: CPU time (clock ticks, all CPUs) spent on anything but idle and iowait.
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
HZ=$(getconf CLK_TCK)

# wait_quiet: other builds and tests may share this machine; wait (at
# most BENCH_QUIET_WAIT seconds, default 60) until the CPUs are at most
# BENCH_QUIET_PCT percent busy (default 15) over 2 seconds. Each measurement
# records how much CPU others used while it ran, so noise stays visible.
QUIET_WAITED=0
wait_quiet() {
	local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-60})) b0 b1 pct
	while :; do
		b0=$(busy_jiffies)
		sleep 2
		b1=$(busy_jiffies)
		pct=$(((b1 - b0) * 100 / (2 * HZ * $(nproc))))
		((pct <= ${BENCH_QUIET_PCT:-15})) && return
		if ((SECONDS >= deadline)); then
			say "machine still ${pct}% busy; measuring anyway"
			return
		fi
		QUIET_WAITED=$((QUIET_WAITED + 2))
	done
}

# time_field FILE LABEL: a value from a /usr/bin/time -v report.
time_field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }

# measure NAME CMD...: run CMD with a cold page cache under /usr/bin/time -v,
# record wall time, user+sys CPU (CMD and its waited-for children) and max
# RSS; for sparsebak, also the agent's own figures and per-thread CPU time.
measure() {
	local name=$1 t0 t1 b0 b1 pid spid=
	shift
	export SPARSEBAK_BENCH_AGENT_TIME=$W/$name.agent.time
	rm -f "$SPARSEBAK_BENCH_AGENT_TIME"
	wait_quiet
	cold
	b0=$(busy_jiffies)
	t0=$(date +%s.%N)
	"${NICE[@]}" /usr/bin/time -v -o "$W/$name.time" "$@" >"$W/$name.log" 2>&1 &
	pid=$!
	if [[ ${BENCH_THREADS:-1} == 1 ]]; then
		python3 "$BENCH/threadcpu.py" "$W/$name.threads" "$pid" &
		spid=$!
	fi
	if ! wait "$pid"; then
		cat "$W/$name.log" >&2
		die "$name failed: $*"
	fi
	t1=$(date +%s.%N)
	b1=$(busy_jiffies)
	[[ -z $spid ]] || wait "$spid"
	put "$name.wall" "$(python3 -c "print(f'{$t1 - $t0:.3f}')")"
	put "$name.busy" "$(python3 -c "print(f'{($b1 - $b0) / $HZ:.2f}')")"
	put "$name.user" "$(time_field "$W/$name.time" 'User time (seconds)')"
	put "$name.sys" "$(time_field "$W/$name.time" 'System time (seconds)')"
	put "$name.rss_kib" "$(time_field "$W/$name.time" 'Maximum resident set size (kbytes)')"
	if [[ -s $SPARSEBAK_BENCH_AGENT_TIME ]]; then
		put "$name.agent_user" "$(time_field "$SPARSEBAK_BENCH_AGENT_TIME" 'User time (seconds)')"
		put "$name.agent_sys" "$(time_field "$SPARSEBAK_BENCH_AGENT_TIME" 'System time (seconds)')"
		put "$name.agent_rss_kib" "$(time_field "$SPARSEBAK_BENCH_AGENT_TIME" 'Maximum resident set size (kbytes)')"
	fi
	if [[ -s $W/$name.threads ]]; then
		put "$name.threads" "$(paste -sd ';' "$W/$name.threads")"
	fi
	say "$name: $(sed -n '$p' "$W/$name.log" | cut -c1-160)"
	unset SPARSEBAK_BENCH_AGENT_TIME
}

put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
put command "$(env | grep -E '^BENCH_' | sort | tr '\n' ' ')bench/bench.sh"
put git "$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- common dom0 vm-agent Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
put rustc "$(rustc --version)"
put nproc "$(nproc)"
put cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
put mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
put kernel "$(uname -r)"
put fs "$FSTYPE on $FSDEV ($(df -h --output=size "$W" | tail -1 | tr -d ' ') total)"
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
cat >"$W/agent" <<EOF
#!/bin/sh
# The agent under its own /usr/bin/time, so its RSS is reported apart.
[ -n "\${SPARSEBAK_BENCH_AGENT_TIME:-}" ] || exec "$BIN/sparsebak-agent" "\$@"
exec /usr/bin/time -v -o "\$SPARSEBAK_BENCH_AGENT_TIME" "$BIN/sparsebak-agent" "\$@"
EOF
chmod +x "$W/agent"
export SPARSEBAK_AGENT=$W/agent
MP=$(stat -c %m "$W")
SB=$BIN/sparsebak
ARCH_OPTS=()
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
put caches_dropped "$DROPPED"
put quiet_waited "$QUIET_WAITED"
put nice "${BENCH_NICE:-0}"
put repeat "$REPEAT"

DOCS=()
[[ ${BENCH_DOCS:-1} == 0 ]] || DOCS=(--docs "$ROOT/docs/BENCHMARKS.md")
python3 "$BENCH/report.py" "$R" "${DOCS[@]}"
