#!/usr/bin/env bash
# internal: and ssh:// destinations against a real OpenSSH server on
# loopback: the send/receive/verify scenario, the ssh argv, the user's ssh
# config (a Host alias), and the errors users see (not mounted, no agent on
# the host, ssh cannot connect).
#   tests/suite-dest-ssh.sh        (KEEP_T=1 keeps the temp dir)
source "$(dirname "$0")/dest-lib.sh"
start_sshd

scenario internal "internal:$MP"
# A Host alias from the ssh config: port, user and address come from there.
scenario sshalias "ssh://sbtest-host$MP"
scenario sshport "ssh://root@127.0.0.1:$SSH_PORT$MP"

say "consistency over ssh: a lost newest session is refused, arch-check --data names a damaged chunk"
vdir=$T/arch-sshport/sparsebak/volumes/vol1
newest=$(sessions sshport vol1 | tail -n 1)
sb sshport arch-check --data >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-check --data over ssh on a sound archive"; }
grep -q ": no problems.$" "$T/out" || { cat "$T/out"; fail "arch-check over ssh printed no verdict"; }
mv "$vdir/S_$newest" "$T/aside"
expect_fail 1 "volume vol1, session $newest: missing on the destination; it is dom0's newest session" \
    sb sshport send -u
mv "$T/aside" "$vdir/S_$newest"
# A chunk file of a folders session (the newest is a tar session).
victim=$(find "$vdir" -path '*/S_*/*/x*' -type f | sort | head -n 1)
vsession=$(basename "$(dirname "$(dirname "$victim")")")
cp "$victim" "$T/victim.orig"
truncate -s -1 "$victim" # cut short: its sha256 cannot match
expect_fail 3 "problem: volume vol1, session ${vsession#S_}, chunk $(basename "$victim"): " \
    sb sshport arch-check --data
cp "$T/victim.orig" "$victim"
sb sshport arch-check --data >/dev/null || fail "arch-check over ssh after the repair"
echo "ok: consistency check and arch-check over ssh"

say "ssh argv: options only -T -e none [-p], then --, target, the agent name"
grep -qxF -- "-T -e none -- sbtest-host sparsebak-agent" "$T/dom0-ssh.pid.args" ||
    { cat "$T/dom0-ssh.pid.args"; fail "unexpected ssh argv for the alias"; }
grep -qxF -- "-T -e none -p $SSH_PORT -- root@127.0.0.1 sparsebak-agent" "$T/dom0-ssh.pid.args" ||
    { cat "$T/dom0-ssh.pid.args"; fail "unexpected ssh argv with a port"; }
! grep -v -e '^-T -e none -- sbtest-host sparsebak-agent$' -e "^-T -e none -p $SSH_PORT -- root@127.0.0.1 sparsebak-agent\$" "$T/dom0-ssh.pid.args" ||
    fail "ssh was run with other arguments"
echo "ok: ssh argv"

say "mountpoint check over ssh"
mkdir -p "$T/plain"
expect_fail 1 "$T/plain is not a mounted file system: mount the backup disk there, or fix --dest" \
    sb notmounted arch-init --dest="ssh://sbtest-host$T/plain"

say "a host without sparsebak-agent"
rm "$T/host-bin/sparsebak-agent"
expect_fail 1 "sparsebak: error: cannot reach the agent at ssh://sbtest-host$T/arch-sshalias: sparsebak-agent is not installed on sbtest-host, or not on the PATH of its non-interactive ssh sessions (ssh exited with status 127; it said: " \
    sb sshalias send -u
grep -qF "sparsebak-agent: not found" "$T/err" || grep -qF "sparsebak-agent: command not found" "$T/err" ||
    fail "the remote shell's message was not passed through"
grep -qF "install it there: copy the statically linked sparsebak-agent to /usr/local/bin/ (it needs no libraries), or install the sparsebak-agent package" "$T/err" ||
    fail "no install hint"
ln -s "$AGENT" "$T/host-bin/sparsebak-agent"
[ "$(sessions sshalias vol1 | wc -l)" = 3 ] || fail "a failed connection changed the sessions"

say "ssh cannot connect"
expect_fail 1 "ssh to root@127.0.0.1 failed (ssh exited with status 255; it said: ssh: connect to host 127.0.0.1 port 1: Connection refused)" \
    sb refused arch-init --dest="ssh://root@127.0.0.1:1$MP"

say "an ssh host that prints to stdout on login corrupts nothing silently"
rm "$T/host-bin/sparsebak-agent" # a link to the real agent: never write through it
cat >"$T/host-bin/sparsebak-agent" <<EOF2
#!/bin/sh
echo "Welcome to the backup host"
exec "$AGENT"
EOF2
chmod 755 "$T/host-bin/sparsebak-agent"
expect_fail 1 "answered with something that is not the sparsebak protocol" sb sshalias send -u
rm "$T/host-bin/sparsebak-agent"
ln -s "$AGENT" "$T/host-bin/sparsebak-agent"

echo
echo "suite-dest-ssh: all passed"
