#!/usr/bin/env bash
# Qubes operations in dom0: the systemd units and the menu entry checked by
# the real tools (systemd-analyze verify, desktop-file-validate); scheduled
# job runs (`sparsebak job`) with a real syslog socket, their records, and
# the notification of a failure; `sparsebak schedule` and `status`. The
# STAND-INS (tests/standins/, not the real programs) are systemctl (no
# systemd runs here), notify-send and runuser (no desktop session, no
# second user). Quick: a few seconds after the build.
#   tests/suite-qubes-ops.sh        (KEEP_T=1 keeps the temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh
tests/setup-host.sh >/dev/null
command -v jq >/dev/null || fail "jq is missing"
cargo test --workspace --no-run -q
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug
SB=$BIN/sparsebak

T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-qops.XXXXXX")
LOGGER=
cleanup() {
    [ -z "$LOGGER" ] || kill "$LOGGER" 2>/dev/null || true
    if [ "${KEEP_T:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT

echo "--- the units and the menu entry, checked by the real tools"
# The shipped units, with only ExecStart's binary pointed at this build
# (systemd-analyze checks that it exists and is executable).
mkdir -p "$T/units"
for f in systemd/sparsebak-*.service systemd/sparsebak-*.timer; do
    sed "s|/usr/bin/sparsebak |$SB |" "$f" >"$T/units/$(basename "$f")"
done
(cd "$T/units" && systemd-analyze verify --man=no ./*.service ./*.timer) || fail "systemd-analyze verify failed"
grep -q '^ExecStart=/usr/bin/sparsebak -u --wait=[0-9]* job monitor$' systemd/sparsebak-monitor.service || fail "monitor unit"
grep -q '^ExecStart=/usr/bin/sparsebak -u --wait=[0-9]* job send$' systemd/sparsebak-send.service || fail "send unit"
grep -q '^Persistent=true$' systemd/sparsebak-send.timer && grep -q '^RandomizedDelaySec=' systemd/sparsebak-send.timer ||
    fail "the send timer is not persistent with a randomised delay"
ok "systemd-analyze verify: both services and timers (--wait, Persistent=true, RandomizedDelaySec)"
desktop-file-validate desktop/sparsebak-send.desktop || fail "desktop-file-validate"
grep -q '^Categories=System;' desktop/sparsebak-send.desktop || fail "the menu entry is not in System Tools"
sh -n desktop/sparsebak-send-now || fail "sparsebak-send-now: syntax"
printf '#!/bin/sh\necho "fake send $*"\nexit 1\n' >"$T/fakesb" && chmod 755 "$T/fakesb"
rc=0
SPARSEBAK=$T/fakesb desktop/sparsebak-send-now </dev/null >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'fake send --wait=1800 send' "$T/out" && grep -q 'the backup FAILED (exit status 1)' "$T/out" &&
    grep -q 'Press Enter to close' "$T/out" || { cat "$T/out"; fail "sparsebak-send-now did not show the failed result"; }
ok "desktop-file-validate; the menu entry runs a send and leaves the result on screen"

echo "--- scheduled job runs: syslog, record, notification"
# A real syslog datagram socket, as /dev/log is.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
open(sys.argv[1] + ".ready", "w").close()
with open(sys.argv[2], "ab", buffering=0) as f:
    while True: f.write(s.recv(65536) + b"\n")
' "$T/log.sock" "$T/syslog" &
LOGGER=$!
for _ in $(seq 100); do [ -e "$T/log.sock.ready" ] && break; sleep 0.05; done
mkdir -p "$T/run/user/0" "$T/img"
python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/run/user/0/bus"
export SPARSEBAK_META_DIR=$T/meta SPARSEBAK_AGENT=$BIN/sparsebak-agent SPARSEBAK_SYSLOG_SOCKET=$T/log.sock \
    SPARSEBAK_USER_RUNDIR=$T/run/user SPARSEBAK_RUNUSER=$REPO/tests/standins/runuser \
    SPARSEBAK_NOTIFY_SEND=$REPO/tests/standins/notify-send STANDIN_NOTIFY_LOG=$T/notify \
    SPARSEBAK_SYSTEMCTL=$REPO/tests/standins/systemctl STANDIN_SYSTEMD=$T/systemd SPARSEBAK_SYSTEMD_DIR=$T/etc-systemd
mkdir -p "$STANDIN_SYSTEMD"
MP=$(stat -c %m "$T")
head -c 3000000 /dev/urandom >"$T/img/vol1"
"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath -m --relative-to="$MP" "$T/arch")" --source="dir:$T/img" --encrypt=off >/dev/null
"$SB" add vol1 >/dev/null
"$SB" -u --wait=10 job send >"$T/out" 2>&1 || { cat "$T/out"; fail "job send failed"; }
grep -c 'sparsebak\[[0-9]*\]: scheduled send succeeded in [0-9]* s' "$T/syslog" | grep -qx 1 ||
    { cat "$T/syslog"; fail "no single summary line in syslog"; }
[ "$(wc -l <"$T/syslog")" = 1 ] || { cat "$T/syslog"; fail "a successful run logged more than one line"; }
[ "$(jq -r .ok "$T/meta/jobs/send.json")" = true ] || fail "the send record does not say ok"
[ ! -e "$T/notify" ] || fail "a successful run notified the user"
"$SB" receive vol1 --save-to="$T/back" -u >/dev/null
cmp "$T/back" "$T/img/vol1" || fail "the job's session does not restore equal"
ok "job send: one syslog line, ok recorded, no notification, its session restores equal"

SPARSEBAK_AGENT=/bin/false "$SB" -u job send >"$T/out" 2>&1 && fail "job send with a broken agent succeeded"
grep -q 'scheduled send FAILED after' "$T/syslog" || { cat "$T/syslog"; fail "no failure summary"; }
grep -q 'sparsebak\[[0-9]*\]: send: .*agent' "$T/syslog" || { cat "$T/syslog"; fail "no error line in syslog"; }
grep -q '^<27>' "$T/syslog" || { cat "$T/syslog"; fail "the error is not logged at priority err (daemon.err)"; }
[ "$(jq -r .ok "$T/meta/jobs/send.json")" = false ] || fail "the failure is not recorded"
[ "$(cat "$T/notify.users")" = root ] || fail "the notification was not sent as the session's user"
grep -qx "bus=unix:path=$T/run/user/0/bus" "$T/notify" && grep -qx 'arg=sparsebak: scheduled send failed' "$T/notify" ||
    { cat "$T/notify"; fail "notify-send was not called with the user's bus and the title"; }
ok "a failed job: summary and error lines in syslog, recorded, the logged-in user notified"
"$SB" -u job monitor >/dev/null 2>&1 || true
[ -e "$T/meta/jobs/monitor.json" ] || fail "job monitor left no record"

echo "--- schedule and status"
"$SB" schedule enable send >"$T/out"
grep -q 'Enabled sparsebak-send.timer' "$T/out" || { cat "$T/out"; fail "schedule enable"; }
"$SB" schedule set-interval monitor 15min >"$T/out"
grep -qx 'OnUnitActiveSec=15min' "$T/etc-systemd/sparsebak-monitor.timer.d/50-sparsebak-interval.conf" || fail "no drop-in"
rc=0
"$SB" schedule set-interval send '03:00; rm -rf /' >"$T/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'invalid send schedule' "$T/out" || { cat "$T/out"; fail "a bad schedule was not refused"; }
[ ! -e "$T/etc-systemd/sparsebak-send.timer.d" ] || fail "a refused schedule wrote a drop-in"
"$SB" schedule show --json >"$T/sched.json"
[ "$(jq -r '.[] | select(.job=="send") | .state' "$T/sched.json")" = enabled ] || fail "schedule show: send not enabled"
[ "$(jq -r '.[] | select(.job=="monitor") | .interval' "$T/sched.json")" = 15min ] || fail "schedule show: interval"
grep -qx 'enable --now sparsebak-send.timer' "$T/systemd/calls" && grep -qx daemon-reload "$T/systemd/calls" || fail "systemctl calls"
ok "schedule enable / set-interval (drop-in, bad value refused) / show"
"$SB" status --json >"$T/status.json"
[ "$(jq -r '.jobs[] | select(.job=="send") | .last.ok' "$T/status.json")" = false ] || fail "status: last send result"
[ "$(jq -r '.jobs[] | select(.job=="send") | .timer.next' "$T/status.json")" = "Sun 2026-12-06 00:31:07 UTC" ] || fail "status: next run"
[ "$(jq -r '.volumes[0].stale' "$T/status.json")" = false ] || fail "status: a fresh volume is stale"
[ "$(jq -r '.volumes[0].newest' "$T/status.json")" = "$("$SB" list vol1 --json | jq -r '.[-1].name' | sed 's/^S_//')" ] ||
    fail "status: newest session"
sleep 1 # the session must be older than 0 h, not of this very second
"$SB" status --max-age=0 --json | jq -e '.volumes[0].stale' >/dev/null || fail "status: threshold"
"$SB" status --max-age=0 >"$T/out"
grep -q 'vol1: newest session .* WARNING: out of date' "$T/out" && grep -q 'last run: FAILED' "$T/out" ||
    { cat "$T/out"; fail "status text"; }
ok "status: last result, next run, newest session, warning past the threshold"

echo
echo "suite-qubes-ops: all passed"
