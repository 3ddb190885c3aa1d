#!/usr/bin/env bash
# Resumable send (docs/FORMAT.md §19): a full send is killed with kill -9 at
# about 40 % and 80 % of its data (as the destination received it), over
# internal:, ssh:// (a real sshd on loopback) and qubes:// (the qrexec-client
# stand-in), killing in turn the transport (ssh; qrexec-client), the agent
# and dom0's sparsebak. Each time the next send must resume: its own report
# says how many bytes it sent, which must be at most the part not yet
# received plus 5 % of the session (so at most 25 % after a kill at 80 %);
# it commits one session, leaves no -tmp behind, and the session restores
# to the image's sha256 and verifies. In the qrexec stand-in the agent is
# the process qrexec-client becomes, so killing the transport there also
# kills the agent; a real qrexec-client is a separate process.
# The links are slowed down with pv so the kill lands where it should.
#   tests/suite-resume.sh        (KEEP_T=1 keeps the temp dir)
source "$(dirname "$0")/dest-lib.sh"
start_sshd
make_vm sbvm
RATE=6m
MIB=24
SECONDS=0

# Agents that record their pid: on the ssh host, in the VM, and for
# internal: (which also throttles itself with pv while $T/slow exists, as
# the ssh wrapper and the qrexec stand-in do for their links).
agent_wrapper() {
    local path=$1 pidfile=$2 throttle=$3
    rm -f "$path"
    cat >"$path" <<EOF
#!/usr/bin/env bash
# Test wrapper (tests/suite-resume.sh): record the agent's pid, then run it.
echo \$\$ >"$pidfile"
if [ "$throttle" = 1 ] && [ -e "$T/slow" ]; then
    exec < <(exec pv -q -L "\$(cat "$T/slow")") > >(exec pv -q -L "\$(cat "$T/slow")")
fi
exec "$AGENT" "\$@"
EOF
    chmod 755 "$path"
}
agent_wrapper "$T/host-bin/sparsebak-agent" "$T/agent-ssh.pid" 0
agent_wrapper "$STANDIN_QUBES/sbvm/bin/sparsebak-agent" "$T/agent-qubes.pid" 0
agent_wrapper "$T/agent-internal" "$T/agent-internal.pid" 1
export SPARSEBAK_AGENT=$T/agent-internal

# One image for every run, and what an uninterrupted send stores of it.
IMG=$T/image
head -c $((MIB << 20)) /dev/urandom >"$IMG"
SUM=$(sha "$IMG")
init_dest ref "internal:$MP"
cp "$IMG" "$T/img-ref/vol1"
sb ref send -u >/dev/null
STORED=$(sb ref list vol1 --json | jq '.[0].stored_bytes')
echo "an uninterrupted send stores $STORED bytes"

# received ARCHDIR: bytes of chunk files in the volume's -tmp directory.
received() {
    find "$1/sparsebak/volumes/vol1" -path '*-tmp/*' -type f -name 'x*' -printf '%s\n' 2>/dev/null |
        awk '{ s += $1 } END { print s + 0 }'
}

# resume_run NAME DEST SLOWFILE VICTIM PIDFILE PERCENT
resume_run() {
    local name=$1 dest=$2 slow=$3 victim=$4 pidfile=$5 pct=$6
    local arch=$T/arch-$name pid rc i want
    say "$dest: kill -9 the $victim at $pct %"
    init_dest "$name" "$dest$MP"
    cp "$IMG" "$T/img-$name/vol1"
    echo "$RATE" >"$slow"
    rm -f "$pidfile"
    SPARSEBAK_META_DIR=$T/meta-$name "$BIN/sparsebak" send -u >"$T/out" 2>"$T/err" &
    pid=$!
    want=$((STORED * pct / 100))
    for i in $(seq 1200); do
        [ "$(received "$arch")" -ge "$want" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$T/err"; fail "the send ended before $pct %"; }
        sleep 0.05
    done
    [ "$victim" = dom0 ] && echo "$pid" >"$pidfile"
    [ -s "$pidfile" ] || fail "no pid in $pidfile"
    kill -9 "$(cat "$pidfile")"
    rc=0
    wait "$pid" || rc=$?
    if [ "$victim" = dom0 ]; then
        [ "$rc" = 137 ] || fail "sparsebak exited $rc, not by kill -9"
    else
        [ "$rc" = 1 ] || { cat "$T/out" "$T/err"; fail "the interrupted send exited $rc, not 1"; }
    fi
    rm -f "$slow"
    wait_unlocked "$arch"
    local got
    got=$(received "$arch")
    [ "$(remote_sessions "$arch" vol1 | wc -l)" = 0 ] || fail "a session was committed"
    echo "ok: interrupted with $got of $STORED bytes on the destination"

    sb "$name" send -u >"$T/out" 2>"$T/err" || { cat "$T/out" "$T/err"; fail "the resumed send failed"; }
    grep -q "resuming the interrupted session" "$T/err" || { cat "$T/err"; fail "the send did not resume"; }
    local sent limit
    sent=$(sed -n 's/^  resumed .*; \([0-9]*\) bytes sent$/\1/p' "$T/out")
    [ -n "$sent" ] || { cat "$T/out"; fail "no resume report"; }
    limit=$((STORED * (100 - pct + 5) / 100))
    [ "$sent" -le "$limit" ] || fail "the resumed send sent $sent bytes, more than $limit"
    echo "ok: the resumed send sent $sent of $STORED bytes ($((sent * 100 / STORED)) %)"
    [ -z "$(find "$arch/sparsebak/volumes/vol1" "$T/meta-$name/volumes/vol1" -maxdepth 1 -name '*-tmp')" ] ||
        fail "a -tmp directory is left"
    [ "$(sb "$name" list vol1 --json | jq '.[0].stored_bytes')" = "$STORED" ] ||
        fail "the session does not store what an uninterrupted send stores"
    check_restores "$name" "$dest$MP" "$SUM"
    rm -rf "$arch" "$T/meta-$name" "$T/img-$name"
}

for pct in 40 80; do
    resume_run "in-a$pct" "internal:" "$T/slow" agent "$T/agent-internal.pid" "$pct"
    resume_run "in-d$pct" "internal:" "$T/slow" dom0 "$T/dom0.pid" "$pct"
    resume_run "ssh-t$pct" "ssh://sbtest-host" "$T/slow" transport "$T/dom0-ssh.pid" "$pct"
    resume_run "ssh-a$pct" "ssh://sbtest-host" "$T/slow" agent "$T/agent-ssh.pid" "$pct"
    resume_run "ssh-d$pct" "ssh://sbtest-host" "$T/slow" dom0 "$T/dom0.pid" "$pct"
    resume_run "qb-t$pct" "qubes://sbvm" "$STANDIN_QUBES/slow" transport "$STANDIN_QUBES/qrexec-client.pid" "$pct"
    resume_run "qb-d$pct" "qubes://sbvm" "$STANDIN_QUBES/slow" dom0 "$T/dom0.pid" "$pct"
done

echo
echo "suite-resume: all passed in ${SECONDS}s"
