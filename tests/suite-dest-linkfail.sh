#!/usr/bin/env bash
# Link failure: the transport is killed in the middle of a send and in the
# middle of a receive, over ssh:// (the ssh process), qubes-ssh:// (the
# relay's ssh in the VM) and qubes:// (qrexec-client, a stand-in). Each must
# fail with a clear error, commit no partial session (local list and archive
# unchanged), release the archive, and the next send must complete and every
# session restore equal. The links are slowed down with pv so the kill lands
# in the middle of the transfer.
#   tests/suite-dest-linkfail.sh        (KEEP_T=1 keeps the temp dir)
source "$(dirname "$0")/dest-lib.sh"
start_sshd
make_vm sbvm
RATE=1m

# wait_for WHAT PID CMD...: poll CMD until it succeeds while PID runs.
wait_for() {
    local what=$1 pid=$2 i
    shift 2
    for i in $(seq 600); do
        if "$@"; then return 0; fi
        kill -0 "$pid" 2>/dev/null || fail "finished before $what: the link was not slow enough"
        sleep 0.1
    done
    fail "timed out waiting for $what"
}

upload_started() {
    [ -n "$(find "$1/sparsebak/volumes/vol1" -path '*-tmp/*' -type f -print -quit 2>/dev/null)" ]
}

# linkfail NAME DEST SLOWFILE PIDFILE EXPECTED-REASON
linkfail() {
    local name=$1 dest=$2 slow=$3 pidfile=$4 reason=$5
    local arch=$T/arch-$name img=$T/img-$name/vol1 rc pid sums=()
    say "link failure over $dest"
    init_dest "$name" "$dest$MP"
    write_image 24 "$img"
    sums+=("$(sha "$img")")
    sb "$name" send -u >/dev/null
    local before
    before=$(sb "$name" list vol1 --json)
    head -c $((16 << 20)) /dev/urandom | dd of="$img" conv=notrunc status=none

    # --- kill during send
    echo "$RATE" >"$slow"
    rm -f "$pidfile"
    sb "$name" send -u >"$T/out" 2>"$T/err" &
    pid=$!
    wait_for "the upload started" "$pid" upload_started "$arch"
    kill -9 "$(cat "$pidfile")"
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 1 ] || { cat "$T/out" "$T/err"; fail "send with a broken link exited $rc, not 1"; }
    grep -qF "sparsebak: error: send of volume vol1 failed; the previous sessions are intact: connection to the agent at $dest$arch was lost (" "$T/err" ||
        { cat "$T/err"; fail "send: unclear error"; }
    grep -qF "$reason" "$T/err" || { cat "$T/err"; fail "send: the reason is not '$reason'"; }
    echo "ok: send failed with: $(grep '^sparsebak: error' "$T/err")"
    [ "$(sb "$name" list vol1 --json)" = "$before" ] || fail "a session was committed locally"
    [ "$(remote_sessions "$arch" vol1 | wc -l)" = 1 ] || fail "a session was committed in the archive"
    wait_unlocked "$arch"
    echo "ok: no partial session; the agent let go of the archive"

    # --- the next send completes
    rm -f "$slow"
    sb "$name" send -u >"$T/out" || { cat "$T/out"; fail "the send after the broken link failed"; }
    sums+=("$(sha "$img")")
    [ "$(sessions "$name" vol1 | wc -l)" = 2 ] || fail "expected 2 sessions"
    [ -z "$(find "$arch/sparsebak/volumes/vol1" -maxdepth 1 -name '*-tmp')" ] || fail "a stale -tmp dir is left"

    # --- kill during receive
    local out=$T/restored-$name part
    part=$T/.restored-$name.sparsebak-part
    echo "$RATE" >"$slow"
    rm -f "$pidfile"
    sb "$name" receive vol1 --save-to="$out" -u >"$T/out" 2>"$T/err" &
    pid=$!
    wait_for "the receive started" "$pid" test -s "$part"
    sleep 1
    kill -0 "$pid" 2>/dev/null || fail "the receive finished before the kill"
    kill -9 "$(cat "$pidfile")"
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 1 ] || { cat "$T/out" "$T/err"; fail "receive with a broken link exited $rc, not 1"; }
    grep -qF "sparsebak: error: receive of vol1 into $out failed: connection to the agent at $dest$arch was lost (" "$T/err" ||
        { cat "$T/err"; fail "receive: unclear error"; }
    grep -qF "$reason" "$T/err" || { cat "$T/err"; fail "receive: the reason is not '$reason'"; }
    echo "ok: receive failed with: $(grep '^sparsebak: error' "$T/err")"
    [ ! -e "$out" ] && [ ! -e "$part" ] || fail "a broken receive left $out or its partial file"
    rm -f "$slow"

    # --- every session restores equal
    local i s
    mapfile -t ses < <(sessions "$name" vol1)
    for i in "${!ses[@]}"; do
        s=${ses[$i]}
        sb "$name" receive vol1 --session="$s" --save-to="$out" -u >/dev/null
        [ "$(sha "$out")" = "${sums[$i]}" ] || fail "session $s restored with a different sha256"
        echo "ok: session $s restores equal"
    done
    rm -f "$out"
}

linkfail lfssh "ssh://sbtest-host" "$T/slow" "$T/dom0-ssh.pid" \
    "ssh to sbtest-host was killed by signal 9: the link broke"
linkfail lfrelay "qubes-ssh://sbvm|sbtest-host" "$T/slow" "$STANDIN_QUBES/sbvm/relay-ssh.pid" \
    "the relay's ssh from VM sbvm to sbtest-host was killed by signal 9: the link broke (the qubes.SparsebakStore service in VM sbvm exited with status 137"
linkfail lfqubes "qubes://sbvm" "$STANDIN_QUBES/slow" "$STANDIN_QUBES/qrexec-client.pid" \
    "qrexec-client for VM sbvm was killed by signal 9: the link broke"

echo
echo "suite-dest-linkfail: all passed"
