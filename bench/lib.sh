# shellcheck shell=bash
# Measuring code shared by the benchmark scripts (sourced, not run).
#
# The caller sets W (its temporary directory) and R (its key=value results
# file, read by bench/report.py or bench/peers_report.py) before calling
# bench_init, then measures commands with `measure NAME CMD...`.
#
# Environment read here:
#   BENCH_QUIET_WAIT, BENCH_QUIET_PCT  before each measurement, wait up to
#                   that many seconds (default 60) for the CPUs to be at
#                   most that busy (default 15%); others' CPU use during each
#                   measurement is reported either way
#   BENCH_NICE      run every measured command with priority nice N, in a
#                   session (autogroup) of its own (e.g. -10 on a machine
#                   shared with other work; default 0 = not)
#   BENCH_THREADS   0 = do not sample per-thread CPU time (default 1)

say() { printf '== %s\n' "$*" >&2; }
die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}

need() { # need COMMAND APT-PACKAGE
	command -v "$1" >/dev/null 2>&1 && return
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing $2"
		apt-get install -y -q "$2" >/dev/null ||
			{ apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; } ||
			die "cannot install $2"
	else
		die "$1 is missing (package $2)"
	fi
}

put() { printf '%s=%s\n' "$1" "$2" >>"$R"; }

# bench_init: the priority wrapper (BENCH_NICE) and the machine description.
# With autogroup scheduling (kernel.sched_autogroup_enabled), nice only ranks
# processes within their session, so the measured command gets a session of
# its own whose autogroup gets the same nice value.
bench_init() {
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
	DROPPED=yes
	QUIET_WAITED=0
	HZ=$(getconf CLK_TCK)
	FSTYPE=$(findmnt -n -o FSTYPE -T "$W")
	FSDEV=$(findmnt -n -o SOURCE -T "$W")
	[[ $FSTYPE != tmpfs ]] || say "WARNING: $W is on tmpfs; the figures will not mean much"
	put date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	put rustc "$(rustc --version 2>/dev/null || echo '?')"
	put nproc "$(nproc)"
	put cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	put mem "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
	put kernel "$(uname -r)"
	put fs "$FSTYPE on $FSDEV ($(df -h --output=size "$W" | tail -1 | tr -d ' ') total)"
}

# bench_finish: what the report needs to say about how the run went.
bench_finish() {
	put caches_dropped "$DROPPED"
	put quiet_waited "$QUIET_WAITED"
	put nice "${BENCH_NICE:-0}"
}

cold() {
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		DROPPED=no
	fi
}

# busy_jiffies: CPU time (clock ticks, all CPUs) spent on anything but idle and iowait.
busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# wait_quiet: other builds and tests may share this machine; wait (at
# most BENCH_QUIET_WAIT seconds, default 60) until the CPUs are at most
# BENCH_QUIET_PCT percent busy (default 15) over 2 seconds. Each measurement
# records how much CPU others used while it ran, so noise stays visible.
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
# RSS; for sparsebak, also the agent's own figures (SPARSEBAK_BENCH_AGENT_TIME,
# written by a wrapper the caller installs) and per-thread CPU time.
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

# agent_wrapper BIN: a wrapper that runs the agent under its own
# /usr/bin/time, so its CPU and RSS are reported apart; prints its path.
agent_wrapper() {
	cat >"$W/agent" <<EOF
#!/bin/sh
[ -n "\${SPARSEBAK_BENCH_AGENT_TIME:-}" ] || exec "$1/sparsebak-agent" "\$@"
exec /usr/bin/time -v -o "\$SPARSEBAK_BENCH_AGENT_TIME" "$1/sparsebak-agent" "\$@"
EOF
	chmod +x "$W/agent"
	echo "$W/agent"
}
