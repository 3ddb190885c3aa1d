#!/usr/bin/env bash
# Restores requested from the backup VM: the real dom0 service file
# (qubes-rpc/sparsebak.Restore) and the real sparsebak, called through the
# STAND-INS (tests/standins/, not the real programs) qrexec-client-vm (the
# VM's call, argument sanitising, policy allow/deny, the clean dom0 service
# environment, stderr kept in dom0) and sudo (exactly the rule in
# rpm/sparsebak-restore.sudoers, which visudo checks). Hostile requests:
# wrong caller, unknown qube, dom0, overlong or malformed arguments, a
# request while another sparsebak runs, a caller the policy denies; every
# request logged. (Restoring a qube needs LVM: the successful restore runs
# in the library tests over the LVM fake, ops::tests::restore_service.)
# Quick: a few seconds after the build.
#   tests/suite-vm-restore.sh        (KEEP_T=1 keeps the temp dir)
source "$(dirname "$0")/dest-lib.sh"
command -v visudo >/dev/null || fail "visudo is missing (tests/setup-host.sh installs sudo)"
visudo -c -q -f rpm/sparsebak-restore.sudoers || fail "visudo -c rejects rpm/sparsebak-restore.sudoers"
grep -qx 'Cmnd_Alias SPARSEBAK_RESTORE = /usr/bin/sparsebak restore-service' rpm/sparsebak-restore.sudoers &&
    grep -qx '%qubes ALL = (root) NOPASSWD: SPARSEBAK_RESTORE' rpm/sparsebak-restore.sudoers ||
    fail "the sudoers rule is not exactly one command without arguments"
[ "$(grep -vc '^#' rpm/sparsebak-restore.sudoers)" = 3 ] || fail "the sudoers file holds more than its three lines"
grep -qx 'exec /usr/bin/sudo -n -- /usr/bin/sparsebak restore-service' qubes-rpc/sparsebak.Restore ||
    fail "the service does not run exactly the command of the sudoers rule"
ok "visudo -c: the sudoers rule; the service runs exactly its command, nothing from the VM on it"

make_vm sys-backup
init_dest sbx "qubes://sys-backup$MP"
write_image 1 "$T/img-sbx/vol1"
sb sbx send -u >/dev/null

# The syslog socket, as /dev/log.
python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
open(sys.argv[1] + ".ready", "w").close()
with open(sys.argv[2], "ab", buffering=0) as f:
    while True: f.write(s.recv(65536) + b"\n")
' "$T/log.sock" "$T/syslog" &
BG_PIDS+=($!)
for _ in $(seq 100); do [ -e "$T/log.sock.ready" ] && break; sleep 0.05; done

# dom0: the shipped service, its sudo pointed at the stand-in.
mkdir -p "$T/dom0-rpc"
printf '%s\n' "SPARSEBAK_META_DIR=$T/meta-sbx" "SPARSEBAK_SYSLOG_SOCKET=$T/log.sock" \
    "SPARSEBAK_QVM_START=$SPARSEBAK_QVM_START" "SPARSEBAK_QREXEC_CLIENT=$SPARSEBAK_QREXEC_CLIENT" \
    "STANDIN_QUBES=$STANDIN_QUBES" "PATH=$REPO/tests/standins:/usr/bin:/bin" >"$T/sudo.env"
sed "s|^exec /usr/bin/sudo |exec env STANDIN_SUDO_ENV=$T/sudo.env STANDIN_SPARSEBAK=$BIN/sparsebak $REPO/tests/standins/sudo |" \
    qubes-rpc/sparsebak.Restore >"$T/dom0-rpc/sparsebak.Restore"
chmod 755 "$T/dom0-rpc/sparsebak.Restore"
export STANDIN_DOM0_RPC=$T/dom0-rpc STANDIN_POLICY=$T/policy
printf 'sparsebak.Restore sys-backup allow\nsparsebak.Restore work allow\n' >"$STANDIN_POLICY"
QCVM=$REPO/tests/standins/qrexec-client-vm

# ask VM ARG EXPECTED-EXIT TEXT
ask() {
    local rc=0
    STANDIN_VM=$1 "$QCVM" dom0 "sparsebak.Restore+$2" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" = "$3" ] || { cat "$T/out" "$T/err"; fail "request '$2' from $1: exit $rc, not $3"; }
    grep -qF -- "$4" "$T/out" || { cat "$T/out" "$T/err"; fail "request '$2' from $1: answer lacks '$4'"; }
    [ ! -s "$T/err" ] || { cat "$T/err"; fail "dom0's stderr reached the VM"; }
    echo "ok: $1 asks '${2:0:60}': exit $rc, $(head -n 1 "$T/out" | cut -c1-110)"
}

ask sys-backup list 0 "ok: qubes this VM may ask to restore"
ask work list 5 "refused: VM work does not serve this archive (its destination is VM sys-backup)"
ask sys-backup qube+work 5 "refused: the archive holds no qube work"
ask sys-backup qube+dom0 5 "refused: dom0 is never restored by request from a VM"
ask sys-backup 'qube+../../etc/shadow' 5 "not a valid qube name"
ask sys-backup 'qube+work;id' 5 "refused: the archive holds no qube work_id"
ask sys-backup "qube+$(head -c 300 /dev/zero | tr '\0' a)" 5 "refused: the request is longer than 100 bytes"
ask sys-backup 'qube+work+2026-12-01' 5 "is not a session time YYYYMMDD-HHMMSS"
ask sys-backup '' 5 "refused: malformed request"
# While another sparsebak holds the meta dir.
flock "$T/meta-sbx/lock" sleep 2 &
holder=$!
sleep 0.3
ask sys-backup list 5 "refused: another sparsebak is running (a backup, or another request): ask again later"
grep -q "$T" "$T/out" && fail "the refusal names a dom0 path"
wait "$holder"
# A caller the policy does not allow never reaches dom0.
rc=0
STANDIN_VM=personal "$QCVM" dom0 sparsebak.Restore+list >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 126 ] && grep -qx 'Request refused' "$T/err" || fail "policy deny: exit $rc"
echo "ok: a VM the policy denies gets 126, Request refused"
# Every request that reached dom0 is logged with its outcome.
n=$(grep -c 'restore request from VM .*: .*: \(ok\|refused\)' "$T/syslog")
[ "$n" = 10 ] || { cat "$T/syslog"; fail "expected 10 logged outcomes, got $n"; }
grep -q '<27>.*sparsebak\[[0-9]*\]: restore request from VM "work": "list": refused: VM work does not serve' "$T/syslog" ||
    { cat "$T/syslog"; fail "a refusal is not logged as an error"; }
ok "every request and its outcome is in syslog (refusals at priority err)"
[ "$(sessions sbx vol1 | wc -l)" = 1 ] || fail "a request changed the archive"

echo
echo "suite-vm-restore: all passed"
