# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Only provisioned thin blocks are read (issue 14 item 2); 64 KiB pool, chunk factor 1.
#  - the first send of a 1 GiB thin LV holding 8 MiB reads about the 8 MiB the pool has
#    provisioned (thin_dump of the metadata snapshot), not 1 GiB: measured with the
#    read_bytes counter of /proc/PID/io of the send (sparsebak and its children);
#  - a send after the change map is lost (resync) reads only the provisioned blocks too;
#  - when thin_dump fails, the send warns and reads the whole volume (never a missed chunk);
#  - every session received into a new LV equals the snapshot sent.
# vm-disks: 2
# vm-timeout: 900
set -- $VM_DISKS
VG=vgp POOL=pool
make_pool $VG $POOL 64k 1G "$1"
archive_disk "$2"
make_thin $VG $POOL big 1G
DEV=/dev/$VG/big
META=/tmp/meta-p
arch_init $VG/$POOL p
sb_ok add big

# send_io VOL: `sparsebak send VOL` in a shell whose /proc/PID/io, read after the send
# exited, holds the counters of the send and of every process it ran (a reaped child's
# counters are added to its parent's). Sets IO_READ (bytes read from block devices) and
# IO_RCHAR (bytes read by read(2) and the like, pipes included); SB_OUT, SB_ERR as sb.
send_io() {
  log "\$ sparsebak send $1   (I/O counted)"
  SB_RC=0
  SPARSEBAK_META_DIR=$META bash -c \
    'sparsebak -u send "$1" </dev/null >/tmp/sb.out 2>/tmp/sb.err; rc=$?; cat /proc/$$/io >/tmp/sb.io; exit $rc' \
    _ "$1" || SB_RC=$?
  SB_OUT=$(cat /tmp/sb.out)
  SB_ERR=$(cat /tmp/sb.err)
  sed 's/^/    | /' /tmp/sb.out
  sed 's/^/    ! /' /tmp/sb.err
  [ "$SB_RC" = 0 ] || die "sparsebak send $1 failed with status $SB_RC: $SB_ERR"
  IO_READ=$(awk '$1 == "read_bytes:" {print $2}' /tmp/sb.io)
  IO_RCHAR=$(awk '$1 == "rchar:" {print $2}' /tmp/sb.io)
  log "send $1 read $IO_READ bytes from block devices ($((IO_READ / MiB)) MiB), rchar $IO_RCHAR ($((IO_RCHAR / MiB)) MiB)"
}

# assert_below N LIMIT WHAT
assert_below() {
  if [ "$1" -lt "$2" ]; then VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1)); log "ok: $3 ($1 < $2)"
  else die "$3: $1 is not below $2"; fi
}

log "== the first send reads the provisioned blocks, not the volume"
for i in 0 1 2 3 4 5 6 7; do write_rand $DEV $((i * 128 * MiB + 3 * MiB)) $MiB; done
run lvs -o lv_name,lv_size,data_percent $VG
send_io big
record_tick $VG big
assert_eq 16384 "$(last_chunks big)" "the full session lists every chunk of 1 GiB"
assert_contains "$SB_OUT" "full session" "a full session"
assert_below "$IO_READ" $((32 * MiB)) "the first send of 1 GiB holding 8 MiB reads less than 32 MiB"
state_clean $VG $POOL

log "== a send after the change map is lost reads the provisioned blocks too"
write_rand $DEV $((700 * MiB)) $MiB
run rm "$(map_file big)"
send_io big
record_tick $VG big
assert_below "$IO_READ" $((32 * MiB)) "the resync send of 1 GiB holding 9 MiB reads less than 32 MiB"
state_clean $VG $POOL

log "== thin_dump fails: the send warns and reads everything"
write_rand $DEV $((900 * MiB)) $MiB
run rm "$(map_file big)"
mkdir -p /tmp/fakebin
printf '#!/bin/sh\necho "thin_dump: broken for the test" >&2\nexit 1\n' >/tmp/fakebin/thin_dump
chmod +x /tmp/fakebin/thin_dump
PATH=/tmp/fakebin:$PATH send_io big
record_tick $VG big
assert_contains "$SB_ERR" "cannot tell which blocks of $VG/big.tick the pool has provisioned" "the fallback warns"
assert_contains "$SB_ERR" "reading the whole volume" "the fallback says it reads everything"
if [ "$IO_READ" -lt $((1000 * MiB)) ]; then die "the fallback read only $IO_READ bytes"; fi
VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
rm -rf /tmp/fakebin
state_clean $VG $POOL

log "== every session received into a new LV equals the snapshot sent"
check_restores $VG big
state_clean $VG $POOL
