# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# kill -9 of send and monitor at many points (issue 3 scenario 6). After each interruption
# the next send succeeds and carries every change (exact counts where the killed run cannot
# have committed a session), the latest session received into a new LV equals VOL.tick,
# and no .tock or reserved metadata snapshot is left behind.
#  1. at the steps of a rotation, held open by wrappers on PATH: tock creation (lvcreate),
#     thin_delta (metadata snapshot reserved), removal of tick (lvremove), and the gap
#     between removing tick and renaming tock (lvrename);
#  2. SIGTERM while the metadata snapshot is reserved: released, clear error;
#  3. send killed after 0.3 s, 1 s, 2 s, 4 s and at fractions of a measured send;
#  4. monitor killed after 0.3 s, 1 s, 2 s, 3 s: no harvested change is lost.
# vm-disks: 2
set -- $VM_DISKS
VG=vgk POOL=pool
make_pool $VG $POOL 64k 1G "$1"
archive_disk "$2"
META=/tmp/meta-k
arch_init $VG/$POOL k
make_thin $VG $POOL vol 32M
DEV=/dev/$VG/vol
sb_ok add vol
write_rand $DEV 0 $((16 * MiB))
send_vol $VG vol 512 "full"

# ---- wrappers that stop at a chosen tool call: /tmp/hook.TOOL holds the seconds to wait
mkdir -p /tmp/hookbin
for tool in lvcreate lvremove lvrename thin_delta; do
  real=$(command -v $tool)
  cat >/tmp/hookbin/$tool <<EOF
#!/bin/sh
if [ -e /tmp/hook.$tool ] && [ "\$1" != -V ]; then   # not the version check
  t=\$(cat /tmp/hook.$tool); rm -f /tmp/hook.$tool
  echo \$\$ >/tmp/hooked.pid
  sleep "\$t"
fi
exec $real "\$@"
EOF
  chmod 755 /tmp/hookbin/$tool
done

# start_hooked TOOL SECS CMD...: run `sparsebak -u CMD` in the background ($BG), stopped in
# TOOL's wrapper for SECS seconds; returns once it is there ($HOOKED = wrapper pid)
start_hooked() {
  local tool=$1 secs=$2 i
  shift 2
  rm -f /tmp/hooked.pid
  echo "$secs" >/tmp/hook.$tool
  log "\$ sparsebak $* (held in $tool for ${secs}s)"
  PATH=/tmp/hookbin:$PATH SPARSEBAK_META_DIR=$META sparsebak -u "$@" </dev/null >/tmp/bg.out 2>/tmp/bg.err &
  BG=$!
  for i in $(seq 600); do
    [ -s /tmp/hooked.pid ] && break
    kill -0 $BG 2>/dev/null || { cat /tmp/bg.out /tmp/bg.err; die "sparsebak $* ended before reaching $tool"; }
    sleep 0.1
  done
  [ -s /tmp/hooked.pid ] || die "sparsebak $* never reached $tool"
  HOOKED=$(cat /tmp/hooked.pid)
}

show_state() {
  log "state: LVs $(lv_names $VG | tr '\n' ' ')| held root $(held_root $VG $POOL)"
}

# after_kill WANT WHAT: the next send succeeds with WANT chunks; restore equals the tick
after_kill() {
  send_vol $VG vol "$1" "$2: next send"
  restore_latest $VG vol
  state_clean $VG $POOL
}

log "== 1. killed inside each step of the rotation"
off=0
for tool in lvcreate thin_delta lvremove lvrename; do
  write_rand $DEV $((off * MiB)) $((4 * MiB))          # 64 chunks
  off=$((off + 4))
  start_hooked $tool 600 send vol
  [ "$tool" = thin_delta ] && assert_ne "-" "$(held_root $VG $POOL)" "metadata snapshot reserved while thin_delta runs"
  kill -9 $BG $HOOKED
  wait $BG 2>/dev/null || true
  log "killed send inside $tool"
  show_state
  case $tool in
    lvremove) assert_eq "pool vol vol.tick vol.tock " "$(lv_names $VG | tr '\n' ' ')" "killed before removing tick" ;;
    lvrename) assert_eq "pool vol vol.tock " "$(lv_names $VG | tr '\n' ' ')" "killed between removing tick and renaming tock" ;;
  esac
  after_kill 64 "killed in $tool"
done

log "== 2. SIGTERM while the metadata snapshot is reserved"
write_rand $DEV $((20 * MiB)) $((4 * MiB))
start_hooked thin_delta 3 send vol
kill -TERM $BG
rc=0; wait $BG || rc=$?
cat /tmp/bg.out; cat /tmp/bg.err
assert_eq 1 "$rc" "send interrupted by SIGTERM exits 1"
assert_contains "$(cat /tmp/bg.err)" "interrupted by a signal; the pool's metadata snapshot was released" "SIGTERM message"
assert_contains "$(cat /tmp/bg.err)" "vol" "the error names the volume"
state_clean $VG $POOL
after_kill 64 "SIGTERM"

log "== 3. send killed after a delay"
# how long does an uninterrupted send of an 8 MiB change take?
write_rand $DEV $((24 * MiB)) $((8 * MiB))
t0=$(cut -d' ' -f1 /proc/uptime)
sb_ok send vol
D=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.2f", b-a}')
assert_eq 128 "$(last_chunks vol)" "reference send of an 8 MiB change"
record_tick $VG vol
log "an uninterrupted send of an 8 MiB change takes ${D}s"
i=0
for T in 0.3 1 2 4 $(awk -v d="$D" 'BEGIN{printf "%.2f %.2f", d*0.6, d*0.85}'); do
  write_rand $DEV $(((i % 4) * 8 * MiB)) $((8 * MiB))    # 128 chunks
  i=$((i + 1))
  c0=$(session_count vol)
  log "\$ sparsebak send vol (killed after ${T}s)"
  SPARSEBAK_META_DIR=$META sparsebak -u send vol </dev/null >/tmp/bg.out 2>&1 &
  BG=$!
  sleep "$T"
  kill -9 $BG 2>/dev/null || log "(send had already finished)"
  wait $BG 2>/dev/null || true
  sed 's/^/    | /' /tmp/bg.out
  show_state
  c1=$(session_count vol)
  if [ "$c1" = "$c0" ]; then
    after_kill 128 "send killed after ${T}s"
  else
    log "the killed send had committed its session; the next send may have nothing new"
    record_tick $VG vol
    sb_ok send vol
    c2=$(session_count vol)
    if [ "$c2" != "$c1" ]; then
      assert_eq 128 "$(last_chunks vol)" "resent the changes of a session committed before the kill"
      record_tick $VG vol
    fi
    restore_latest $VG vol
    state_clean $VG $POOL
  fi
done

log "== 4. monitor killed after a delay: harvested changes accumulate"
i=0
for T in 0.3 1 2 3; do
  write_rand $DEV $((i * 4 * MiB + 2 * MiB)) $((4 * MiB))
  i=$((i + 1))
  log "\$ sparsebak monitor (killed after ${T}s)"
  SPARSEBAK_META_DIR=$META sparsebak -u monitor </dev/null >/tmp/bg.out 2>&1 &
  BG=$!
  sleep "$T"
  kill -9 $BG 2>/dev/null || log "(monitor had already finished)"
  wait $BG 2>/dev/null || true
  sed 's/^/    | /' /tmp/bg.out
  show_state
done
sb_ok monitor
show_state
state_clean $VG $POOL
# 4 writes of 4 MiB at 2, 6, 10, 14 MiB: 256 chunks
send_vol $VG vol 256 "send after the killed monitors carries every change"
assert_eq "$(sha_head $DEV $((32 * MiB)))" "$(recorded_sha vol)" "the tick sent = the volume"
restore_latest $VG vol
state_clean $VG $POOL
assert_eq "pool
vol
vol.tick" "$(lv_names $VG)" "LVs at the end"
