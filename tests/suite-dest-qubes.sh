#!/usr/bin/env bash
# qubes:// and qubes-ssh:// destinations through the qrexec-client and
# qvm-start STAND-INS (tests/standins/, not Qubes code) running the real
# qubes-rpc/qubes.SparsebakStore; qubes-ssh relays to a real OpenSSH server
# on loopback. The send/receive/verify scenario, the exact qrexec calls, the
# service's argument and header handling, and the errors users see.
#   tests/suite-dest-qubes.sh        (KEEP_T=1 keeps the temp dir)
source "$(dirname "$0")/dest-lib.sh"
start_sshd
make_vm sbvm
QC=$SPARSEBAK_QREXEC_CLIENT
SVC=$REPO/qubes-rpc/qubes.SparsebakStore

scenario qubes "qubes://sbvm$MP"
scenario qubesssh "qubes-ssh://sbvm|sbtest-host$MP"
scenario qubessshport "qubes-ssh://sbvm|root@127.0.0.1:$SSH_PORT$MP"

say "the qrexec calls dom0 made"
sort -u "$STANDIN_QUBES/qrexec-client.log" >"$T/calls"
printf '%s\n' "-d sbvm DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0" \
    "-d sbvm DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0" | diff - "$T/calls" ||
    fail "unexpected qrexec-client calls"
[ "$(sort -u "$STANDIN_QUBES/qvm-start.log")" = "--skip-if-running sbvm" ] || fail "unexpected qvm-start calls"
sort -u "$STANDIN_QUBES/sbvm/relay-ssh.pid.args" >"$T/calls"
printf '%s\n' "-T -e none -- sbtest-host sparsebak-agent" \
    "-T -e none -p $SSH_PORT -- root@127.0.0.1 sparsebak-agent" | diff - "$T/calls" ||
    fail "unexpected ssh calls by the relay"
echo "ok: qrexec-client, qvm-start and relay ssh argv"

say "a halted VM is started first"
rm "$STANDIN_QUBES/sbvm/running"
sb qubes send -u >/dev/null
[ -e "$STANDIN_QUBES/sbvm/running" ] || fail "the VM was not started"
echo "ok: qvm-start --skip-if-running ran before qrexec-client"
expect_fail 1 "cannot start VM nosuch for qubes://nosuch$T/x: $SPARSEBAK_QVM_START --skip-if-running nosuch failed (exit status: 1): qvm-start: error: no such domain: 'nosuch'" \
    sb nosuch arch-init --dest="qubes://nosuch$T/x"

say "mountpoint check in the VM and behind the relay"
mkdir -p "$T/plain"
expect_fail 1 "$T/plain is not a mounted file system: mount the backup disk there, or fix --dest" \
    sb notmounted arch-init --dest="qubes://sbvm$T/plain"
expect_fail 1 "$T/plain is not a mounted file system: mount the backup disk there, or fix --dest" \
    sb notmounted arch-init --dest="qubes-ssh://sbvm|sbtest-host$T/plain"

say "a VM without the service, a VM without the agent, a host without the agent"
make_vm nosvc
rm "$STANDIN_QUBES/nosvc/rpc/qubes.SparsebakStore"
expect_fail 1 "VM nosvc has no qrexec service qubes.SparsebakStore (qrexec-client exited with status 127); install the sparsebak-agent package in its template" \
    sb nosvc arch-init --dest="qubes://nosvc$MP"
make_vm noagent
rm "$STANDIN_QUBES/noagent/bin/sparsebak-agent"
expect_fail 1 "the qubes.SparsebakStore service in VM noagent is missing a program (exited with status 69; it said: qubes.SparsebakStore: sparsebak-agent is not installed in this VM: install the sparsebak-agent package" \
    sb noagent arch-init --dest="qubes://noagent$MP"
rm "$T/host-bin/sparsebak-agent"
expect_fail 1 "sparsebak-agent is not installed on sbtest-host, reached over ssh from VM sbvm (the qubes.SparsebakStore service in VM sbvm exited with status 227; it said: bash: line 1: sparsebak-agent: command not found); install it there" \
    sb qubesssh send -u
ln -s "$AGENT" "$T/host-bin/sparsebak-agent"
[ "$(sessions qubesssh vol1 | wc -l)" = 3 ] || fail "a failed connection changed the sessions"

say "dom0's service argument arrives unchanged (not sanitised) and is checked by the service"
expect_fail 64 "qubes.SparsebakStore: unknown mode '../etc/x@y'" \
    "$QC" -d sbvm "DEFAULT:QUBESRPC qubes.SparsebakStore+../etc/x@y dom0"
expect_fail 2 "option -t refused" "$QC" -t -d sbvm "DEFAULT:QUBESRPC qubes.SparsebakStore+agent dom0"
for bad in "-oProxyCommand=touch_$T/pwned -" 'a;touch_x -' 'a$(id) -' 'me@host 0' 'me@host 65536' \
    'me@host 22x' 'me@host 22 extra' 'me@@host -' '@host -'; do
    printf 'sparsebak-relay 1 %s\n' "$bad" >"$T/hdr"
    rc=0
    "$QC" -d sbvm "DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0" <"$T/hdr" 2>"$T/err" || rc=$?
    [ "$rc" = 65 ] || { cat "$T/err"; fail "relay header '$bad' gave exit $rc, not 65"; }
    grep -qE "qubes.SparsebakStore: (refusing relay|relay header has extra)" "$T/err" || { cat "$T/err"; fail "no refusal message for '$bad'"; }
done
printf 'sparsebak-relay 2 me@host -\n' >"$T/hdr"
expect_fail 65 "relay header version '2' is not supported" "$QC" -d sbvm "DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0" <"$T/hdr"
expect_fail 65 "no relay header on stdin" "$QC" -d sbvm "DEFAULT:QUBESRPC qubes.SparsebakStore+relay dom0" </dev/null
[ ! -e "$T/pwned" ] || fail "a relay header ran a command"
echo "ok: malformed relay headers are refused with exit 65"

say "the relay header is consumed byte-exactly by dash and by bash"
mkdir -p "$T/fakessh"
cat >"$T/fakessh/ssh" <<EOF2
#!/bin/sh
printf '%s\n' "\$*" >"$T/fakessh/args"
exec cat >"$T/fakessh/got"
EOF2
chmod 755 "$T/fakessh/ssh"
head -c 1048576 /dev/urandom >"$T/payload"
for shell in dash bash; do
    command -v "$shell" >/dev/null || continue
    { printf 'sparsebak-relay 1 me@host.example 2222\n'; cat "$T/payload"; } |
        PATH="$T/fakessh:/usr/bin:/bin" "$shell" "$SVC" relay
    cmp -s "$T/payload" "$T/fakessh/got" || fail "$shell: the stream after the relay header was changed"
    [ "$(cat "$T/fakessh/args")" = "-T -e none -p 2222 -- me@host.example sparsebak-agent" ] ||
        fail "$shell: relay ssh args: $(cat "$T/fakessh/args")"
    echo "ok: $shell passes the stream after the header unchanged"
done

echo
echo "suite-dest-qubes: all passed"
