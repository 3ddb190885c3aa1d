#!/usr/bin/env bash
# tests/vm/smoke.sh - self-test of the real-LVM VM harness. Run from anywhere:
#   bash tests/vm/smoke.sh
# 1. build.sh (kernel + initramfs, cached)
# 2. run.sh with smoke-guest.sh: thin pools with hyphenated names, snapshots, thin_delta on a
#    reserved metadata snapshot, sha256 of snapshots, ext4 + fstrim        -> must exit 0
# 3. run.sh with a guest script that exits 3 (non-executable test.sh)     -> must exit 3
# 4. run.sh with a guest script that hangs (short timeout)                -> must exit 124
# 5. run.sh with a guest script that crashes the kernel                   -> must exit 125
# So the harness cannot pass silently. Prints timings and "N passed, N failed".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PASSED=0 FAILED=0
declare -a TIMINGS=()

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
say() { printf '[smoke] %s\n' "$*"; }
check() { # check DESCRIPTION CONDITION...
  local what=$1; shift
  if "$@"; then PASSED=$((PASSED + 1)); say "PASS: $what"
  else FAILED=$((FAILED + 1)); say "FAIL: $what"; fi
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-smoke.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
T_ALL=$(now)

say "build.sh"
t=$(now)
bash "$HERE/build.sh"
TIMINGS+=("build.sh: $(secs "$t") s")

# run_case NAME [ENV=VAL...]: run.sh on $WORK/NAME, output in $WORK/NAME.log, status in RC
run_case() {
  local name=$1; shift
  say "run.sh: $name"
  local t; t=$(now)
  RC=0
  env "$@" bash "$HERE/run.sh" "$WORK/$name" >"$WORK/$name.log" 2>&1 || RC=$?
  TIMINGS+=("run.sh $name: $(secs "$t") s (status $RC)")
  sed 's/^/    /' "$WORK/$name.log"
}
has() { grep -qF -- "$2" "$WORK/$1.log"; }

# ---- case 1: the real scenario
mkdir -p "$WORK/thin/bin"
install -m755 "$HERE/smoke-guest.sh" "$WORK/thin/test.sh"
printf '#!/bin/sh\necho "hello from /share/bin"\n' >"$WORK/thin/bin/sparsebak-vm-hello"
chmod 755 "$WORK/thin/bin/sparsebak-vm-hello"
run_case thin SPARSEBAK_VM_DISKS=2 SPARSEBAK_VM_DISK_SIZE=1G
check "thin scenario exits 0" [ "$RC" = 0 ]
check "thin scenario log reached the host" has thin "SMOKE-OK"
check "guest stderr reached the host" has thin "Logical volume \"snap2\" created."
check "guest wrote into the share" grep -qE '^[0-9a-f]{64}$' "$WORK/thin/out/snap2.sha256"

# ---- case 2: a failing guest script must fail the run with its status
mkdir -p "$WORK/exit3"
cat >"$WORK/exit3/test.sh" <<'EOF'
#!/bin/sh
echo "exit3: stdout line"
echo "exit3: stderr line" >&2
sleep 1000 &   # a leftover process holding the log open must not hang the guest
exit 3
EOF
chmod 644 "$WORK/exit3/test.sh"   # not executable: run through sh
run_case exit3
check "exit-3 scenario exits 3" [ "$RC" = 3 ]
check "exit-3 scenario stdout reached the host" has exit3 "exit3: stdout line"
check "exit-3 scenario stderr reached the host" has exit3 "exit3: stderr line"

# ---- case 3: a hanging guest is killed by the host-side timeout
mkdir -p "$WORK/hang"
cat >"$WORK/hang/test.sh" <<'EOF'
#!/bin/sh
echo "hang: going to sleep"
sleep 100000
EOF
chmod 755 "$WORK/hang/test.sh"
run_case hang SPARSEBAK_VM_TIMEOUT=25
check "hanging scenario exits 124 (timeout)" [ "$RC" = 124 ]
check "hanging scenario partial log reached the host" has hang "hang: going to sleep"

# ---- case 4: kernel crash -> no status -> failure
mkdir -p "$WORK/panic"
cat >"$WORK/panic/test.sh" <<'EOF'
#!/bin/sh
echo "panic: crashing the kernel"
echo c >/proc/sysrq-trigger
sleep 60
EOF
chmod 755 "$WORK/panic/test.sh"
run_case panic
check "kernel crash exits 125 (no status)" [ "$RC" = 125 ]
check "kernel crash is reported" has panic "FAIL: guest kernel panic"

say "timings:"
for l in "${TIMINGS[@]}"; do say "  $l"; done
say "  total: $(secs "$T_ALL") s"
echo "smoke: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
