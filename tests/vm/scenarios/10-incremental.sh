# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Incremental sends, monitor rotations and diff on a 64 KiB pool, chunk factor 1
# (issue 3 scenarios 1, 2, 4 and 10).
#  - full send, then writes at known offsets: the session holds exactly the chunks written;
#  - writes with several monitor rotations in between: the next send carries the union;
#  - diff compares the archive with VOL.tick: 0 right after a send, still 0 after writes
#    that no monitor harvested yet, the right count after monitor (exit 4);
#  - diff --remap after the change map is deleted: the next send carries exactly the
#    differing chunks;
#  - every session received into a new LV equals the snapshot sent;
#  - after the meta dir is lost, arch-recover rebuilds it: every session restores, send
#    is refused until `add`; diff --remap rebuilds the change map, so the first send
#    carries only what differs, and the chain continues.
# vm-disks: 2
# vm-timeout: 900
set -- $VM_DISKS
VG=vg0 POOL=pool0
make_pool $VG $POOL 64k 1G "$1"
archive_disk "$2"
make_thin $VG $POOL vol 32M
DEV=/dev/$VG/vol
META=/tmp/meta-a
arch_init $VG/$POOL a

sb_ok add vol
write_rand $DEV 0 $((6 * MiB))
send_vol $VG vol 512 "full send"
assert_eq 33554432 "$(last_volsize vol)" "volsize of the full session"
state_clean $VG $POOL
assert_eq "$(sha_head $DEV $((32 * MiB)))" "$(recorded_sha vol)" "the tick sent = the volume (no writes since)"
assert_eq "pool0
vol
vol.tick" "$(lv_names $VG)" "LVs after the first send: only vol.tick was added"

log "== 1. writes at known offsets"
write_rand $DEV 0 4096                              # chunk 0
write_rand $DEV $((100 * CH + 8192)) 4096           # chunk 100
write_rand $DEV $((200 * CH)) $CH                   # chunk 200
write_rand $DEV $((301 * CH - 4096)) 8192           # chunks 300, 301
write_rand $DEV $((10 * MiB)) $MiB                  # chunks 160-175 (unprovisioned before)
send_vol $VG vol 21 "send after 5 writes (1+1+1+2+16 chunks)"
state_clean $VG $POOL
send_vol $VG vol none "send without writes"

log "== 2. monitor rotations accumulate"
write_rand $DEV $((10 * CH)) 4096                   # chunk 10
sb_ok monitor
assert_contains "$SB_OUT" "vol: 1 chunks changed since the last harvest; 1 pending for the next send" "monitor 1"
write_rand $DEV $((10 * CH + 4096)) 4096            # chunk 10 again
write_rand $DEV $((20 * CH)) 4096                   # chunk 20
sb_ok monitor
assert_contains "$SB_OUT" "vol: 2 chunks changed since the last harvest; 2 pending for the next send" "monitor 2"
write_rand $DEV $((400 * CH)) $((2 * CH))           # chunks 400, 401
sb_ok monitor
assert_contains "$SB_OUT" "vol: 2 chunks changed since the last harvest; 4 pending for the next send" "monitor 3"
sb_ok monitor
assert_contains "$SB_OUT" "vol: 0 chunks changed since the last harvest; 4 pending for the next send" "monitor without writes"
state_clean $VG $POOL
write_rand $DEV $((450 * CH)) 4096                  # chunk 450, not harvested by a monitor
send_vol $VG vol 5 "send after 3 monitors: union {10, 20, 400, 401, 450}"
state_clean $VG $POOL

log "== 10. diff compares the archive with the tick"
sb_ok diff vol
assert_contains "$SB_OUT" ": 0 of 512 chunks differ" "diff right after a send"
write_rand $DEV $((30 * CH)) 4096
write_rand $DEV $((31 * CH + 32768)) 4096
write_rand $DEV $((500 * CH)) 4096
sb_ok diff vol
assert_contains "$SB_OUT" ": 0 of 512 chunks differ" "diff before monitor: the tick has not moved"
sb_ok monitor
assert_contains "$SB_OUT" "vol: 3 chunks changed since the last harvest; 3 pending" "monitor after 3 writes"
sb_fails 4 "" diff vol
assert_contains "$SB_OUT" ": 3 of 512 chunks differ" "diff after monitor (exit 4)"
assert_eq "  differs: chunk 0x1e0000
  differs: chunk 0x1f0000
  differs: chunk 0x1f40000" "$(printf '%s\n' "$SB_OUT" | grep differs:)" "diff lists the differing chunks"
send_vol $VG vol 3 "send after diff"
sb_ok diff vol
assert_contains "$SB_OUT" ": 0 of 512 chunks differ" "diff after the send"

log "== 10. diff --remap after the change map is lost"
write_rand $DEV $((50 * CH)) 4096
write_rand $DEV $((51 * CH)) 4096
sb_ok monitor
write_rand $DEV $((52 * CH)) 4096                   # not harvested
write_rand $DEV $((300 * CH)) $((4 * CH))           # 300-303, not harvested
run rm "$(map_file vol)"
sb_ok diff vol --remap
assert_contains "$SB_OUT" ": 7 of 512 chunks differ" "diff --remap counts the differences of the volume"
assert_contains "$SB_OUT" "7 chunks flagged; the next send brings the archive in sync." "diff --remap flags them"
state_clean $VG $POOL
send_vol $VG vol 7 "send after diff --remap carries exactly the differing chunks"
sb_ok diff vol
assert_contains "$SB_OUT" ": 0 of 512 chunks differ" "diff after the remapped send"
assert_eq "$(sha_head $DEV $((32 * MiB)))" "$(recorded_sha vol)" "tick = volume after the remapped send"

log "== 10. diff --remap with an intact map adds to it"
write_rand $DEV $((60 * CH)) 4096
sb_ok monitor
sb_ok diff vol --remap
assert_contains "$SB_OUT" ": 1 of 512 chunks differ" "diff --remap with the map intact"
send_vol $VG vol 1 "send after diff --remap (map intact)"

log "== the change map lost without diff --remap: the whole volume is re-read"
write_rand $DEV $((70 * CH)) 4096
run rm "$(map_file vol)"
send_vol $VG vol 512 "send without a change map re-reads every chunk"
send_vol $VG vol none "and then is incremental again"

log "== 4. every session received into a new LV equals the snapshot sent"
check_restores $VG vol
state_clean $VG $POOL

log "== disaster recovery: dom0's metadata is lost, arch-recover rebuilds it from the archive"
run mv "$META" "$META.lost"
sb_ok arch-recover --source=$VG/$POOL --dest=internal:/mnt/bk --subdir=a
assert_contains "$SB_OUT" "Recovered archive" "arch-recover summary"
assert_contains "$SB_OUT" "1 volume(s), $(session_count vol) session(s)" "every session recovered"
check_restores $VG vol
sb_fails 1 "volume vol was recovered from the archive by arch-recover" send vol
sb_ok add vol
assert_contains "$SB_OUT" "run \`sparsebak diff vol --remap\` once" "add of a recovered thin volume says how to keep the next send small"
write_rand $DEV $((80 * CH)) 4096
sb_ok diff vol --remap
assert_contains "$SB_OUT" ": 1 of 512 chunks differ" "diff --remap after recovery finds the one write"
send_vol $VG vol 1 "first send after recovery and diff --remap carries only the differing chunk"
send_vol $VG vol none "then incremental again"
write_rand $DEV $((81 * CH)) 4096
send_vol $VG vol 1 "and the next write is one chunk"
restore_latest $VG vol
assert_eq "$(sessions vol | cut -d' ' -f1-2)" "$(cut -d' ' -f1-2 "$(state_file vol)")" \
  "sessions after recovery and two sends = the sessions sent"
run rm -rf "$META.lost"
state_clean $VG $POOL
assert_eq "pool0
vol
vol.tick" "$(lv_names $VG)" "LVs at the end"
