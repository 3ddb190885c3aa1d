# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Volume size changes, discards, and receive into the volume's own LV (issue 3 scenarios
# 5, 8 and 9); 64 KiB pool, chunk factor 1.
#  - g grows 32 -> 48 MiB (lvextend): the session holds the new region + the writes;
#  - s shrinks 48 -> 24 MiB (lvreduce -f), then grows back to 40 MiB: the regrown region
#    is sent as the volume shows it (lvreduce leaves the old blocks mapped);
#  - d: blkdiscard of 1 MiB; f: ext4 on a thin volume, a file removed and fstrim;
#  - receive of an older session into the volume itself (--save-to=/dev/VG/VOL, also with a
#    size change), then send: the new latest session equals the volume;
#  - every session of every volume received into a new LV equals the snapshot sent.
# vm-disks: 2
set -- $VM_DISKS
VG=vgr POOL=pool
make_pool $VG $POOL 64k 1G "$1"
archive_disk "$2"
META=/tmp/meta-r
arch_init $VG/$POOL r
make_thin $VG $POOL g 32M
make_thin $VG $POOL s 48M
make_thin $VG $POOL d 32M
make_thin $VG $POOL f 32M
for v in g s d f; do sb_ok add $v; done
write_rand /dev/$VG/g 0 $((4 * MiB))
write_rand /dev/$VG/s 0 $((4 * MiB))
write_rand /dev/$VG/s $((30 * MiB)) $((2 * MiB))
write_rand /dev/$VG/d 0 $((8 * MiB))
run mkfs.ext4 -q /dev/$VG/f
send_vol $VG g 512 "g: full"
send_vol $VG s 768 "s: full"
send_vol $VG d 512 "d: full"

log "== 5. grow"
write_rand /dev/$VG/g $MiB 4096
run lvextend -q -L 48M $VG/g
write_rand /dev/$VG/g $((40 * MiB)) 4096                 # inside the new region
send_vol $VG g $((1 + 256)) "g grown 32 -> 48 MiB: 1 chunk written + 256 new chunks"
assert_eq $((48 * MiB)) "$(last_volsize g)" "g: list shows the new size"
assert_contains "$SB_OUT" "volume size changed from 33554432 to 50331648 bytes" "send reports the growth"
write_rand /dev/$VG/g $((47 * MiB)) 4096
send_vol $VG g 1 "g: after the growth, incremental as usual"

log "== 5. shrink"
write_rand /dev/$VG/s $((2 * MiB)) 4096                  # kept
write_rand /dev/$VG/s $((30 * MiB)) 4096                 # cut off
run lvreduce -q -f -L 24M $VG/s
send_vol $VG s 1 "s shrunk 48 -> 24 MiB: the 1 chunk written inside"
assert_eq $((24 * MiB)) "$(last_volsize s)" "s: list shows the new size"
send_vol $VG s none "s: nothing changed after the shrink"
run lvextend -q -L 40M $VG/s
send_vol $VG s 256 "s regrown 24 -> 40 MiB: 256 new (zero) chunks"
# lvreduce of a thin LV (lvm2 2.03.16) does not unmap the blocks past the new end: the
# regrown region shows the 2 MiB written at 30 MiB again (32 data chunks, 224 zero). The
# session must hold what the volume shows, not what the archive had there before the
# shrink: check_restores compares it with the snapshot.
assert_contains "$SB_OUT" "256 chunks changed (224 zero)" "s: the regrown region as LVM shows it"

log "== 8. blkdiscard"
run blkdiscard -o $((2 * MiB)) -l $MiB /dev/$VG/d
send_vol $VG d 16 "d: 1 MiB discarded = 16 chunks"
assert_eq "$(head -c $MiB /dev/zero | sha256sum | cut -d' ' -f1)" \
  "$(dd if="$(tick_dev $VG d)" bs=$MiB skip=2 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)" \
  "d: the discarded range of the snapshot reads as zeros"

log "== 8. fstrim of ext4 on a thin volume"
mkdir -p /mnt/f
run mount -t ext4 /dev/$VG/f /mnt/f
head -c $((6 * MiB)) /dev/urandom >/mnt/f/big
head -c 20000 /dev/urandom >/mnt/f/small
run umount /mnt/f
send_vol $VG f "" "f: full, with a 6 MiB file"
run mount -t ext4 /dev/$VG/f /mnt/f
rm /mnt/f/big
sync   # blocks freed by an uncommitted ext4 transaction are not trimmed yet
run fstrim -v /mnt/f
run umount /mnt/f
send_vol $VG f "" "f: after rm + fstrim"
n=$(last_chunks f)
[ "$n" -ge 96 ] || die "f: the session after fstrim holds $n chunks, expected at least the 96 of the file"
log "ok: f: $n chunks after fstrim (>= 96)"
run mount -t ext4 -o ro "$(tick_dev $VG f)" /mnt/f
assert_eq "/mnt/f/lost+found /mnt/f/small" "$(echo /mnt/f/*)" "f: the snapshot sent holds the file system after rm"
run umount /mnt/f

log "== 9. receive into the volume's own LV"
old=$(recorded_session d 1)
sb_ok receive d --session="${old#S_}" --save-to=/dev/$VG/d
assert_eq "$(recorded_sha d 1)" "$(sha_head /dev/$VG/d $((32 * MiB)))" "d: received the first session into itself"
send_vol $VG d "" "d: send after receiving into itself"
assert_eq "$(recorded_sha d 1)" "$(recorded_sha d)" "d: the new session equals the received session"
write_rand /dev/$VG/d $((5 * MiB)) 4096
send_vol $VG d 1 "d: incremental again after that"
# s: its first session was 48 MiB, it is 40 MiB now: receive resizes it
old=$(recorded_session s 1)
sb_ok receive s --session="${old#S_}" --save-to=/dev/$VG/s
assert_eq $((48 * MiB)) "$(dev_size /dev/$VG/s)" "s: resized to 48 MiB by receive"
assert_eq "$(recorded_sha s 1)" "$(sha_head /dev/$VG/s $((48 * MiB)))" "s: received the first session into itself"
send_vol $VG s "" "s: send after receiving a bigger session into itself"
assert_eq $((48 * MiB)) "$(last_volsize s)" "s: new size recorded"
assert_eq "$(recorded_sha s 1)" "$(recorded_sha s)" "s: the new session equals the received session"

for v in g s d f; do check_restores $VG $v; done
state_clean $VG $POOL
