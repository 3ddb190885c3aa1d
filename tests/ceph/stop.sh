#!/usr/bin/env bash
# Stop the Ceph cluster tests/ceph/start.sh started in DIR, then remove DIR.
#
#   tests/ceph/stop.sh DIR [--keep]     --keep: leave DIR (logs) in place
#
# Stops only the PIDs recorded in DIR/pids, newest first (radosgw, OSD,
# monitor), and only while their command line still names DIR's ceph.conf
# (a PID the kernel has reused is left alone): SIGTERM, then SIGKILL after
# 10 s. Idempotent: a missing DIR or a daemon already gone is fine.
set -euo pipefail
dir=${1:?usage: tests/ceph/stop.sh DIR [--keep]}
keep=${2:-}
[ -d "$dir" ] || exit 0
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf

# Is $1 still the daemon started with our conf?
ours() {
    [ -r "/proc/$1/cmdline" ] && tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF "$conf"
}

if [ -f "$dir/pids" ]; then
    mapfile -t lines < <(tac "$dir/pids")
    for line in "${lines[@]}"; do
        read -r name pid <<<"$line"
        ours "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            ours "$pid" || break
            sleep 0.1
        done
        if ours "$pid"; then
            echo "ceph/stop: $name ($pid) ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
fi
[ "$keep" = --keep ] || rm -rf "$dir"
