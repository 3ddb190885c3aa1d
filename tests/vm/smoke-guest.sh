#!/bin/sh
# Guest side of tests/vm/smoke.sh (runs inside the VM as /share/test.sh).
# Real LVM thin pools whose VG and pool names contain hyphens, thin snapshots, writes and a
# discard at known offsets, thin_delta on a reserved metadata snapshot, sha256 of snapshots.
set -eu
# shellcheck source-path=SCRIPTDIR source=guest-lib.sh
. "$VM_LIB"

log "disks: $VM_DISKS"
# shellcheck disable=SC2086  # split the disk list
set -- $VM_DISKS
[ $# -ge 2 ] || die "this scenario needs 2 disks (SPARSEBAK_VM_DISKS=2)"
DISK1=$1 DISK2=$2

# ---- the image has what scenarios need; /share/bin is on PATH
for c in sha256sum dd blkdiscard fstrim mkfs.ext4 mount umount sync timeout kill sleep head cmp \
         truncate lvm dmsetup thin_delta thin_dump thin_ls bash; do
  command -v "$c" >/dev/null || die "command $c missing in the guest"
done
assert_eq "hello from /share/bin" "$(sparsebak-vm-hello)" "/share/bin is on PATH"
assert_eq "4" "$(timeout 5 sh -c 'exit 4' || echo $?)" "timeout passes the exit status"

# ---- pool 1: 64 KiB chunks, hyphens in VG and pool names
VG=test-vg POOL=my-pool
CH=65536
make_pool "$VG" "$POOL" 64k 256M "$DISK1"
make_thin "$VG" "$POOL" vol 8M
VOL=$(lv_dev "$VG" vol)
assert_eq "test--vg-my--pool-tpool" "$(tpool_dm "$VG" "$POOL")" "dm name of the tpool"
assert_eq "/dev/mapper/test--vg-my--pool_tmeta" "$(tmeta_dev "$VG" "$POOL")" "tmeta path"
assert_ok dmsetup info test--vg-my--pool-tpool >/dev/null
assert_ok test -b /dev/mapper/test--vg-my--pool_tmeta

random_file /tmp/a 1024   # 1 MiB
random_file /tmp/b 256
random_file /tmp/c 64
random_file /tmp/d 128
random_file /tmp/e 1024
# expected contents of the snapshots, built beside (tmpfs)
truncate -s 8M /tmp/img1
put() { write_at "$1" "$VOL" "$2"; write_at "$1" "$3" "$2"; }

log "writes before snap1: chunks 0-15 and 40-43"
put /tmp/a 0 /tmp/img1
put /tmp/b $((40 * CH)) /tmp/img1
make_snap "$VG" vol snap1

log "changes before snap2: chunk 4 rewritten, 40-43 discarded, 60-61 and 100-115 new"
cp /tmp/img1 /tmp/img2
put /tmp/c $((4 * CH)) /tmp/img2
run blkdiscard -o $((40 * CH)) -l $((4 * CH)) "$VOL"
dd if=/dev/zero of=/tmp/img2 bs=$CH seek=40 count=4 conv=notrunc 2>/dev/null
put /tmp/d $((60 * CH)) /tmp/img2
put /tmp/e $((100 * CH)) /tmp/img2
make_snap "$VG" vol snap2
sync

ID1=$(thin_id "$VG" snap1)
ID2=$(thin_id "$VG" snap2)
log "thin ids: snap1=$ID1 snap2=$ID2"
run lvs -a -o lv_name,lv_attr,lv_size,pool_lv,origin,thin_id,chunksize,data_percent "$VG"

# -m needs a reserved metadata snapshot
assert_fails thin_delta -m --thin1 "$ID1" --thin2 "$ID2" /dev/mapper/test--vg-my--pool_tmeta 2>/dev/null

# the explicit sequence (the guest-lib helper thin_delta_xml does the same)
run dmsetup message test--vg-my--pool-tpool 0 reserve_metadata_snap
XML=$(thin_delta -m --thin1 "$ID1" --thin2 "$ID2" /dev/mapper/test--vg-my--pool_tmeta)
run dmsetup message test--vg-my--pool-tpool 0 release_metadata_snap
printf '%s\n' "$XML"
case $XML in *'data_block_size="128"'*) ;; *) die "data_block_size is not 128 sectors" ;; esac
assert_eq "different 4 1
left_only 40 4
right_only 60 2
right_only 100 16" "$(printf '%s\n' "$XML" | delta_ranges)" "thin_delta ranges (64 KiB chunks)"
# released: a second reservation must work again (and the helper agrees)
assert_eq "$XML" "$(thin_delta_xml "$VG" "$POOL" "$ID1" "$ID2")" "thin_delta_xml helper"

log "snapshot contents"
activate_lv "$VG" snap1
activate_lv "$VG" snap2
S1=$(sha256_of "$(lv_dev "$VG" snap1)")
S2=$(sha256_of "$(lv_dev "$VG" snap2)")
log "sha256 snap1=$S1"
log "sha256 snap2=$S2"
assert_eq "$(sha256_of /tmp/img1)" "$S1" "sha256 of snap1"
assert_eq "$(sha256_of /tmp/img2)" "$S2" "sha256 of snap2"
assert_eq "$S2" "$(sha256_of "$VOL")" "origin unchanged since snap2"
assert_same_content "$(lv_dev "$VG" snap1)" /tmp/img1 "snap1 byte-identical"
mkdir -p /share/out
echo "$S2" >/share/out/snap2.sha256

# ---- pool 2 on the second disk: 512 KiB chunks (thin_delta units are chunks)
VG2=vg-b POOL2=pool-512
make_pool "$VG2" "$POOL2" 512k 128M "$DISK2"
make_thin "$VG2" "$POOL2" v 16M
V2=$(lv_dev "$VG2" v)
write_at /tmp/a "$V2" 0                      # chunks 0-1
make_snap "$VG2" v s1
write_at /tmp/c "$V2" 65536                  # 64 KiB inside shared chunk 0
write_at /tmp/c "$V2" $((3 * 524288))        # new chunk 3
make_snap "$VG2" v s2
XML2=$(thin_delta_xml "$VG2" "$POOL2" "$(thin_id "$VG2" s1)" "$(thin_id "$VG2" s2)")
printf '%s\n' "$XML2"
case $XML2 in *'data_block_size="1024"'*) ;; *) die "data_block_size is not 1024 sectors" ;; esac
assert_eq "different 0 1
right_only 3 1" "$(printf '%s\n' "$XML2" | delta_ranges)" "thin_delta ranges (512 KiB chunks)"

# ---- ext4 on a thin volume, fstrim
make_thin "$VG" "$POOL" fsvol 64M
run mkfs.ext4 -q "$(lv_dev "$VG" fsvol)"
mkdir -p /mnt/fs
run mount -t ext4 "$(lv_dev "$VG" fsvol)" /mnt/fs
head -c 4194304 /dev/urandom >/mnt/fs/file
sync
rm /mnt/fs/file
assert_ok fstrim /mnt/fs
run umount /mnt/fs

asserts_summary
echo "SMOKE-OK"
