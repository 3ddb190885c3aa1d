# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Pool chunk sizes 64 KiB and 512 KiB, each with chunk factor 1 (64 KiB backup chunks) and
# 4 (256 KiB): four archives, four volumes, the same writes; the incremental session must
# hold exactly the backup chunks that cover the changed pool blocks (issue 3 scenario 3).
#
# Writes (after a full send of a volume whose first 8 MiB hold data):
#   W1  4 KiB at 4 KiB                 (shared block: copy-on-write, "different")
#   W2  4 KiB at 20 MiB + 12 KiB       (unprovisioned: "right_only")
#   W3  64 KiB at 3 MiB + 480 KiB      (straddles 64 KiB chunks 55/56, 256 KiB chunks 13/14,
#                                       512 KiB pool blocks 6/7)
#   W4  4 KiB at 5 MiB and 4 KiB at 5 MiB + 128 KiB (two 64 KiB blocks, one 256 KiB chunk,
#                                       one 512 KiB block)
# Expected chunks per session:
#            pool 64 KiB               pool 512 KiB (one block = 8 x 64 KiB = 2 x 256 KiB)
#   factor 1 W1 1 + W2 1 + W3 2 + W4 2 = 6    8 + 8 + 16 + 8 = 40
#   factor 4 W1 1 + W2 1 + W3 2 + W4 1 = 5    2 + 2 +  4 + 2 = 10
# vm-disks: 2
set -- $VM_DISKS
VG=vgc
make_pool $VG p64 64k 512M "$1"
make_pool $VG p512 512k 512M
archive_disk "$2"

assert_eq 128 "$(lvs --noheadings --units s --nosuffix -o chunk_size $VG/p64 | tr -d ' ')" "p64 chunk size (sectors)"
assert_eq 1024 "$(lvs --noheadings --units s --nosuffix -o chunk_size $VG/p512 | tr -d ' ')" "p512 chunk size (sectors)"

# name pool factor expected-chunks
CASES=("a1 p64 1 6" "a4 p64 4 5" "b1 p512 1 40" "b4 p512 4 10")

for c in "${CASES[@]}"; do
  read -r v pool f _ <<<"$c"
  make_thin $VG $pool $v 32M
  write_rand /dev/$VG/$v 0 $((8 * MiB))
  META=/tmp/meta-$v
  arch_init $VG/$pool $v "$f"
  sb_ok add $v
  send_vol $VG $v $((32 * MiB / (f * CH))) "$v: full send"
done

for c in "${CASES[@]}"; do
  read -r v _ <<<"$c"
  d=/dev/$VG/$v
  write_rand $d 4096 4096                                  # W1
  write_rand $d $((20 * MiB + 12288)) 4096                 # W2
  write_rand $d $((3 * MiB + 480 * KiB)) $((64 * KiB))     # W3
  write_rand $d $((5 * MiB)) 4096                          # W4
  write_rand $d $((5 * MiB + 128 * KiB)) 4096
done

for c in "${CASES[@]}"; do
  read -r v pool f want <<<"$c"
  META=/tmp/meta-$v
  send_vol $VG $v "$want" "$v (pool $pool, chunk factor $f)"
  send_vol $VG $v none "$v: nothing changed since"
done

log "== a 4 KiB write, harvested by monitor, then sent"
for c in "${CASES[@]}"; do
  read -r v pool f _ <<<"$c"
  write_rand /dev/$VG/$v $((30 * MiB)) 4096                # unprovisioned block
  META=/tmp/meta-$v
  sb_ok monitor
done
# 64 KiB pool: 1 chunk at either factor; 512 KiB pool: 8 chunks at factor 1, 2 at factor 4
for vw in a1:1 a4:1 b1:8 b4:2; do
  v=${vw%:*}
  META=/tmp/meta-$v
  send_vol $VG $v "${vw#*:}" "$v: one 4 KiB write"
done

for c in "${CASES[@]}"; do
  read -r v pool _ <<<"$c"
  META=/tmp/meta-$v
  check_restores $VG $v
  state_clean $VG $pool
done
