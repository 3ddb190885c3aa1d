# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # names without spaces; VM_DISKS etc. from the harness
# Two pools in two VGs on two disks, each with its own archive (SPARSEBAK_META_DIR), and
# VG/pool/volume names with hyphens, which device-mapper doubles (issue 3 scenario 7):
#   archive q: VG qubes-dom0-test, pool pool-00, volumes vm-work-private, vm-work-root
#              (dm: qubes--dom0--test-vm--work--private.tick, ..-pool--00-tpool, ..._tmeta)
#   archive t: VG vg-two, pool pool-b, volume sys-net-private; chunk factor 2
# Both archives on one ext4 disk, in different subdirs. `send` and `monitor` without
# volume names work on every volume of the archive; the LVs sparsebak creates are exactly
# <vol>.tick (no Qubes suffix -snap, -back, -import); every session restores equal.
# vm-disks: 3
set -- $VM_DISKS
QVG=qubes-dom0-test QPOOL=pool-00
TVG=vg-two TPOOL=pool-b
make_pool $QVG $QPOOL 64k 512M "$1"
make_pool $TVG $TPOOL 128k 512M "$2"
archive_disk "$3"
make_thin $QVG $QPOOL vm-work-private 32M
make_thin $QVG $QPOOL vm-work-root 32M
make_thin $TVG $TPOOL sys-net-private 32M
write_rand /dev/$QVG/vm-work-private 0 $((2 * MiB))
write_rand /dev/$QVG/vm-work-root $((8 * MiB)) $((2 * MiB))
write_rand /dev/$TVG/sys-net-private $((4 * MiB)) $((2 * MiB))
assert_eq "qubes--dom0--test-pool--00-tpool" "$(tpool_dm $QVG $QPOOL)" "dm name of the hyphenated pool"

QMETA=/tmp/meta-q TMETA=/tmp/meta-t
META=$QMETA
arch_init $QVG/$QPOOL q
sb_ok add vm-work-private
sb_ok add vm-work-root
sb_ok add vm-work-later                  # does not exist yet
META=$TMETA
arch_init $TVG/$TPOOL sub/t 2
sb_ok add sys-net-private

log "== first sends: every volume of each archive"
META=$QMETA
sb_ok send
assert_contains "$SB_ERR" "volume vm-work-later does not exist yet in $QVG; skipped" "a volume that does not exist yet is skipped"
for v in vm-work-private vm-work-root; do
  assert_eq 512 "$(last_chunks $v)" "$v: full session"
  record_tick $QVG $v
done
META=$TMETA
send_vol $TVG sys-net-private 256 "sys-net-private: full (128 KiB chunks)"
assert_eq "pool-00
vm-work-private
vm-work-private.tick
vm-work-root
vm-work-root.tick" "$(lv_names $QVG)" "LVs of $QVG: only <vol>.tick added"
assert_eq "pool-b
sys-net-private
sys-net-private.tick" "$(lv_names $TVG)" "LVs of $TVG"
assert_ok test -b /dev/mapper/qubes--dom0--test-vm--work--private.tick

log "== writes, monitor on both archives, more writes, send"
write_rand /dev/$QVG/vm-work-private $((3 * CH)) 4096             # q chunk 3
write_rand /dev/$QVG/vm-work-root $((100 * CH)) $((3 * CH))       # q chunks 100-102
write_rand /dev/$TVG/sys-net-private $((5 * CH)) 4096             # t: 128 KiB chunk 2
META=$QMETA; sb_ok monitor
assert_contains "$SB_OUT" "vm-work-private: 1 chunks changed since the last harvest; 1 pending" "monitor q private"
assert_contains "$SB_OUT" "vm-work-root: 3 chunks changed since the last harvest; 3 pending" "monitor q root"
META=$TMETA; sb_ok monitor
assert_contains "$SB_OUT" "sys-net-private: 1 chunks changed since the last harvest; 1 pending" "monitor t"
state_clean $QVG $QPOOL
state_clean $TVG $TPOOL
write_rand /dev/$QVG/vm-work-private $((200 * CH)) 4096           # q chunk 200
write_rand /dev/$TVG/sys-net-private $((6 * CH)) $((4 * CH))      # t: 128 KiB chunks 3, 4
META=$QMETA
send_vol $QVG vm-work-private 2 "vm-work-private: 2 chunks"
send_vol $QVG vm-work-root 3 "vm-work-root: 3 chunks"
META=$TMETA
send_vol $TVG sys-net-private 3 "sys-net-private: 128 KiB chunks 2, 3, 4"

log "== the volume added before it existed"
make_thin $QVG $QPOOL vm-work-later 16M
write_rand /dev/$QVG/vm-work-later 0 $MiB
META=$QMETA
send_vol $QVG vm-work-later 256 "vm-work-later: full once it exists"
write_rand /dev/$QVG/vm-work-later $MiB 4096
sb_ok send
assert_eq 1 "$(last_chunks vm-work-later)" "vm-work-later: incremental in a send of every volume"
record_tick $QVG vm-work-later

log "== every session of both archives restores equal (LV names with hyphens)"
META=$QMETA
for v in vm-work-private vm-work-root vm-work-later; do check_restores $QVG $v; done
META=$TMETA
check_restores $TVG sys-net-private
state_clean $QVG $QPOOL
state_clean $TVG $TPOOL
assert_eq "" "$( (lv_names $QVG; lv_names $TVG) | grep -E -- '-(snap|back|import)$' || true)" "no LV with a Qubes suffix"
