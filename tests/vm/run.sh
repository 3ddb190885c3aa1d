#!/usr/bin/env bash
# tests/vm/run.sh SHARE_DIR - boot the real-LVM test VM and run SHARE_DIR/test.sh in it.
#
# SHARE_DIR is mounted read-write at /share in the guest (9p); /share/bin is first in
# PATH; the cwd is /share. Blank virtio disks (/dev/vda, /dev/vdb, ...) are attached;
# their names are in $VM_DISKS. The guest helper library is at $VM_LIB (/vm/guest-lib.sh).
#
# Prints the guest log (stdout+stderr of test.sh) on stdout and exits with test.sh's exit
# status. Harness failures: 124 = timeout (guest killed), 125 = no status from the guest
# (kernel panic, init failure, qemu error), 2 = usage.
#
# Env: SPARSEBAK_VM_TIMEOUT    host-side timeout in seconds (default 600)
#      SPARSEBAK_VM_DISKS      number of blank disks (default 1)
#      SPARSEBAK_VM_DISK_SIZE  size of each disk (default 2G; sparse raw files)
#      SPARSEBAK_VM_DISK_DIR   keep the disk images in this dir and reuse them (default: temp)
#      SPARSEBAK_VM_MEM        guest RAM in MiB (default 1024)
#      SPARSEBAK_VM_SMP        vCPUs (default 2)
#      SPARSEBAK_VM_ACCEL      qemu accelerator (default tcg; this host's /dev/kvm can't boot it)
#      SPARSEBAK_VM_CPU        qemu -cpu model (default: qemu's, qemu64 under TCG)
#      SPARSEBAK_VM_APPEND     extra kernel command line
#      SPARSEBAK_VM_VERBOSE=1  stream the serial console live to stderr
#      SPARSEBAK_VM_KEEP=1     keep the temp dir (console log, guest log, disks)
#      SPARSEBAK_VM_SHELL=1    interactive: after test.sh, a shell on the console (no timeout)
#      SPARSEBAK_VM_CACHE      where build.sh put the kernel + initramfs
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SPARSEBAK_VM_CACHE:-/var/cache/sparsebak-vm}
TIMEOUT=${SPARSEBAK_VM_TIMEOUT:-600}
NDISKS=${SPARSEBAK_VM_DISKS:-1}
DISK_SIZE=${SPARSEBAK_VM_DISK_SIZE:-2G}
MEM=${SPARSEBAK_VM_MEM:-1024}
SMP=${SPARSEBAK_VM_SMP:-2}
ACCEL=${SPARSEBAK_VM_ACCEL:-tcg}
VERBOSE=${SPARSEBAK_VM_VERBOSE:-0}
KEEP=${SPARSEBAK_VM_KEEP:-0}
SHELL_MODE=${SPARSEBAK_VM_SHELL:-0}

msg() { printf '[vm] %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -e/{s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 2; }

[ $# -eq 1 ] || usage
case $1 in -h|--help) usage ;; esac
SHARE=$(readlink -f "$1" 2>/dev/null || true)
if [ -z "$SHARE" ] || [ ! -d "$SHARE" ]; then msg "SHARE_DIR '$1' is not a directory"; exit 2; fi
[ -f "$SHARE/test.sh" ] || { msg "$SHARE/test.sh does not exist"; exit 2; }
for v in TIMEOUT NDISKS MEM SMP; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { msg "SPARSEBAK_VM_$v must be a number (got '${!v}')"; exit 2; }
done

OUT=$CACHE/out
# (re)build when the image or qemu is missing, or the image came from another build.sh
if [ ! -s "$OUT/initramfs.cpio" ] || ! command -v qemu-system-x86_64 >/dev/null \
   || [ "$(cat "$OUT/build.sh.sha256" 2>/dev/null)" != "$(sha256sum <"$HERE/build.sh" | cut -d' ' -f1)" ]; then
  msg "VM image missing or out of date (or qemu missing): running build.sh"
  "$HERE/build.sh" >&2 || { msg "build.sh failed"; exit 125; }
fi
KERNEL=$OUT/vmlinux
[ -s "$KERNEL" ] || KERNEL=$OUT/vmlinuz
KVER=$(awk '/^kernel /{print $2; exit}' "$OUT/manifest" 2>/dev/null || echo '?')

T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-vm.XXXXXX")
QPID=
# shellcheck disable=SC2317  # called through trap
cleanup() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill -TERM "$QPID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then msg "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'msg "interrupted"; exit 130' INT TERM

# control share: env for the guest, the helper library, and the guest's log + status
mkdir -p "$T/ctl"
cp "$HERE/guest-lib.sh" "$T/ctl/guest-lib.sh"
printf 'VM_NDISKS=%s\n' "$NDISKS" >"$T/ctl/env"

DISK_DIR=${SPARSEBAK_VM_DISK_DIR:-$T/disks}
mkdir -p "$DISK_DIR"
drives=()
for ((i = 0; i < NDISKS; i++)); do
  img=$DISK_DIR/disk$i.img
  if [ -z "${SPARSEBAK_VM_DISK_DIR:-}" ] || [ ! -e "$img" ]; then
    rm -f "$img"
    truncate -s "$DISK_SIZE" "$img"
  fi
  drives+=(-drive "file=$img,format=raw,if=none,id=disk$i,cache=unsafe,discard=unmap,aio=threads"
           -device "virtio-blk-pci,drive=disk$i,serial=sparsebak-disk$i")
done

APPEND="console=ttyS0 quiet panic=-1 rdinit=/init ${SPARSEBAK_VM_APPEND:-}"
[ "$SHELL_MODE" = 1 ] && APPEND="$APPEND sparsebak.shell"
args=(-accel "$ACCEL" ${SPARSEBAK_VM_CPU:+-cpu "$SPARSEBAK_VM_CPU"} -m "$MEM" -smp "$SMP" -nodefaults -no-user-config -no-reboot
      -display none -nic none
      -kernel "$KERNEL" -initrd "$OUT/initramfs.cpio" -append "$APPEND"
      -virtfs "local,path=$T/ctl,mount_tag=vmctl,security_model=none,id=vmctl,multidevs=remap"
      -virtfs "local,path=$SHARE,mount_tag=share,security_model=none,id=share,multidevs=remap"
      "${drives[@]}")

if [ "$SHELL_MODE" = 1 ]; then
  msg "interactive boot (Ctrl-a x quits qemu)"
  qemu-system-x86_64 "${args[@]}" -serial mon:stdio || true
  [ -f "$T/ctl/status" ] && exit "$(cat "$T/ctl/status")"
  exit 125
fi

msg "booting: kernel $KVER, $SMP vCPU, $MEM MiB, $NDISKS disk(s) x $DISK_SIZE, accel $ACCEL, timeout ${TIMEOUT}s"
T0=$(date +%s.%N)
: >"$T/console.log"
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 "${args[@]}" -serial "file:$T/console.log" \
  >"$T/qemu.log" 2>&1 &
QPID=$!
if [ "$VERBOSE" = 1 ]; then
  tail -n +1 -f --pid="$QPID" "$T/console.log" >&2 &
fi
qrc=0
wait "$QPID" || qrc=$?
QPID=
[ "$VERBOSE" = 1 ] && wait
SECS=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')

print_guest_log() {
  echo "===== guest log (/share/test.sh) ====="
  if [ -f "$T/ctl/guest.log" ]; then cat "$T/ctl/guest.log"; else echo "(no guest log)"; fi
  echo "===== end of guest log ====="
}
print_console_tail() {
  {
    echo "----- serial console (last ${1:-60} lines) -----"
    tail -n "${1:-60}" "$T/console.log"
    if [ -s "$T/qemu.log" ]; then echo "----- qemu output -----"; cat "$T/qemu.log"; fi
    echo "-----"
  } >&2
}

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  print_guest_log
  print_console_tail 40
  msg "FAIL: guest timed out after ${TIMEOUT}s (killed; SPARSEBAK_VM_TIMEOUT)"
  exit 124
fi
if [ -f "$T/ctl/status" ]; then
  rc=$(cat "$T/ctl/status")
  [[ $rc =~ ^[0-9]+$ ]] || { msg "FAIL: bad status file content '$rc'"; exit 125; }
  print_guest_log
  if [ "$rc" = 0 ]; then
    msg "guest test passed (status 0) in ${SECS}s"
  else
    [ "$VERBOSE" = 1 ] || print_console_tail 30
    msg "guest test FAILED with status $rc in ${SECS}s"
  fi
  exit "$rc"
fi
print_guest_log
print_console_tail 80
if grep -q 'Kernel panic' "$T/console.log"; then
  msg "FAIL: guest kernel panic (no status from the guest) after ${SECS}s"
elif [ "$qrc" != 0 ]; then
  msg "FAIL: qemu exited with status $qrc (no status from the guest) after ${SECS}s"
else
  msg "FAIL: the guest powered off without writing a status after ${SECS}s"
fi
exit 125
