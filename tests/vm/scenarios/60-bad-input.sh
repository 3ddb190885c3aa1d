# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Bad input (issue 3): each case fails with exit status 1 and an error naming the volume
# (and the pool where it is about the pool), and leaves the change map, the snapshots and
# the pool's metadata snapshot as they were, so the next good send carries every change
# (exact count) and restores equal.
#  - a volume that is not thin (plain lvcreate);
#  - a pool that does not exist; a VG that does not exist;
#  - thin_delta missing from PATH, too old (0.6.0), or printing truncated XML;
#  - the pool's metadata snapshot already reserved by another tool: not released by us;
#  - a full pool (error_if_no_space), where lvcreate of the snapshot fails.
# vm-disks: 2
set -- $VM_DISKS
VG=vgb POOL=pool
make_pool $VG $POOL 64k 512M "$1"
make_pool $VG tiny 64k 8M
run lvchange -q --errorwhenfull y $VG/tiny
archive_disk "$2"
make_thin $VG $POOL vol 32M
DEV=/dev/$VG/vol
write_rand $DEV 0 $((2 * MiB))
run lvcreate -q -L 8M -n plain $VG
META=/tmp/meta-b
arch_init $VG/$POOL b
sb_ok add vol
sb_ok add plain
send_vol $VG vol 512 "vol: full"

# consistent VOL: the map, the tick's thin id and the LV list are as saved by `snap_state`
snap_state() {
  cp "$(map_file vol)" /tmp/map.saved
  SAVED_TICK_ID=$(thin_id $VG vol.tick)
  SAVED_LVS=$(lv_names $VG)
}
unchanged() {
  assert_ok cmp "$(map_file vol)" /tmp/map.saved
  assert_eq "$SAVED_TICK_ID" "$(thin_id $VG vol.tick)" "$1: vol.tick untouched"
  assert_eq "$SAVED_LVS" "$(lv_names $VG)" "$1: no snapshot added or removed"
  assert_eq "-" "$(held_root $VG $POOL)" "$1: no metadata snapshot left reserved"
}

log "== a volume that is not thin"
sb_fails 1 "volume vgb/plain is not a thin volume in pool pool" send plain
sb_fails 1 "volume vgb/plain is not a thin volume in pool pool" monitor plain
assert_eq "" "$(lv_names $VG | grep '^plain\.' || true)" "no snapshot of plain"
sb_fails 1 "plain" diff plain
sb_ok delete plain
write_rand $DEV $((5 * CH)) 4096                                # chunk 5: pending from here on
snap_state

log "== a pool that does not exist"
META=/tmp/meta-nopool
arch_init $VG/nopool nopool
sb_ok add vol
sb_fails 1 "volume vol: thin pool vgb/nopool does not exist (volume vol)" send vol
sb_fails 1 "thin pool vgb/nopool does not exist (volume vol)" monitor
assert_eq 0 "$(session_count vol)" "no session in the archive of the missing pool"
META=/tmp/meta-novg
arch_init novg/pool novg
sb_ok add vol
sb_fails 1 "volume vol: cannot list the logical volumes of volume group novg" send vol
META=/tmp/meta-b
unchanged "missing pool or VG"

log "== thin_delta missing from PATH"
mkdir -p /tmp/nodelta
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for f in "$d"/*; do
    [ -e "$f" ] && [ "${f##*/}" != thin_delta ] && [ ! -e "/tmp/nodelta/${f##*/}" ] && ln -s "$f" /tmp/nodelta/
  done
done
assert_fails env PATH=/tmp/nodelta sh -c 'command -v thin_delta'
write_rand $DEV $((6 * CH)) 4096                                # chunk 6
PATH=/tmp/sbbin:/tmp/nodelta sb_fails 1 "thin_delta is needed for LVM thin volumes: install thin-provisioning-tools" send vol
assert_contains "$SB_ERR" "volume vol" "the error names the volume"
PATH=/tmp/sbbin:/tmp/nodelta sb_fails 1 "monitor of volume vol: thin_delta is needed" monitor
unchanged "thin_delta missing"

log "== thin_delta too old"
mkdir -p /tmp/olddelta
cat >/tmp/olddelta/thin_delta <<EOF
#!/bin/sh
[ "\$1" = -V ] && { echo 0.6.0; exit 0; }
exec $(command -v thin_delta) "\$@"
EOF
chmod 755 /tmp/olddelta/thin_delta
PATH=/tmp/olddelta:$PATH sb_fails 1 "volume vol: thin_delta 0.6.0 is too old: sparsebak needs thin-provisioning-tools 0.7.0 or later" send vol
unchanged "thin_delta too old"

log "== thin_delta printing truncated XML"
mkdir -p /tmp/baddelta
cat >/tmp/baddelta/thin_delta <<EOF
#!/bin/sh
[ "\$1" = -V ] && exec $(command -v thin_delta) -V
$(command -v thin_delta) "\$@" | head -n 2
EOF
chmod 755 /tmp/baddelta/thin_delta
PATH=/tmp/baddelta:$PATH sb_fails 1 "thin_delta output ended early" send vol
assert_contains "$SB_ERR" "volume vol" "the error names the volume"
unchanged "truncated thin_delta output"

log "== the metadata snapshot reserved by another tool"
write_rand $DEV $((7 * CH)) 4096                                # chunk 7
reserve_metadata_snap $VG $POOL
ROOT=$(held_root $VG $POOL)
sb_fails 1 "volume vol: the metadata snapshot of thin pool vgb/pool is already reserved by another tool" send vol
assert_eq "$ROOT" "$(held_root $VG $POOL)" "send left the other tool's metadata snapshot reserved"
sb_fails 1 "already reserved by another tool" monitor
assert_eq "$ROOT" "$(held_root $VG $POOL)" "monitor left it reserved too"
release_metadata_snap $VG $POOL
unchanged "metadata snapshot reserved by another tool"
send_vol $VG vol 3 "vol: after all the failures, chunks 5, 6, 7"
assert_eq "$(sha_head $DEV $((32 * MiB)))" "$(recorded_sha vol)" "vol: the tick sent = the volume"
assert_ok test ! -e $META/metadata-snap-reserved

log "== a full pool (error_if_no_space): lvcreate of the snapshot fails"
make_thin $VG tiny tv 32M
make_thin $VG tiny tv2 16M
write_rand /dev/$VG/tv 0 $((2 * MiB))
META=/tmp/meta-full
arch_init $VG/tiny full
sb_ok add tv
sb_ok add tv2
send_vol $VG tv 512 "tv: full"
log "filling pool tiny (8 MiB)"
dd if=/dev/urandom of=/dev/$VG/tv bs=$MiB seek=2 count=12 oflag=direct 2>&1 | tail -n 1 || true
run dmsetup status "$(tpool_dm $VG tiny)"
assert_contains "$(dmsetup status "$(tpool_dm $VG tiny)")" "out_of_data_space" "pool tiny is full"
cp "$(map_file tv)" /tmp/tvmap.saved
TV_TICK=$(thin_id $VG tv.tick)
sb_fails 1 "volume tv: cannot create snapshot vgb/tv.tock of tv" send tv
assert_contains "$SB_ERR" "Cannot create new thin volume, free space in thin pool vgb/tiny reached threshold" "LVM's reason is quoted"
sb_fails 1 "monitor of volume tv: cannot create snapshot vgb/tv.tock of tv" monitor tv
sb_fails 1 "volume tv2: cannot create snapshot vgb/tv2.tick of tv2" send tv2
assert_ok cmp "$(map_file tv)" /tmp/tvmap.saved
assert_eq "$TV_TICK" "$(thin_id $VG tv.tick)" "tv.tick untouched"
assert_eq "" "$(lv_names $VG | grep -E '^tv2?\.tock$|^tv2\.tick$' || true)" "no snapshot left behind in the full pool"
assert_eq "-" "$(held_root $VG tiny)" "tiny: no metadata snapshot reserved"
run lvextend -q -L +64M $VG/tiny
run dmsetup status "$(tpool_dm $VG tiny)"
write_rand /dev/$VG/tv $((20 * MiB)) 4096                       # the pool takes writes again
send_vol $VG tv "" "tv: after the pool was extended"
assert_eq "$(sha_head /dev/$VG/tv $((32 * MiB)))" "$(recorded_sha tv)" "tv: the tick sent = the volume"
send_vol $VG tv2 256 "tv2: first send once the pool has space"

log "== restores"
check_restores $VG tv
check_restores $VG tv2
META=/tmp/meta-b
check_restores $VG vol
state_clean $VG $POOL
state_clean $VG tiny
assert_eq "pool
tiny
tv
tv.tick
tv2
tv2.tick
vol
vol.tick" "$(lv_names $VG | grep -v '^plain$')" "LVs at the end"
