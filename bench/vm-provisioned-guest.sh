# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # sourced by the generated test.sh in the guest
# Guest side of bench/vm-provisioned.sh: the first send of a thin LV reads
# the blocks the pool has provisioned, not the LV (issue 14 item 2), on real
# LVM thin; next to it, in the same boot, dd of the whole LV (what a reader
# without the pool's map must do at least). Bytes are /proc/PID/io counters
# of the command and the children it waited for.
set -- $VM_DISKS
VG=vg0 POOL=pool0 DEV=/dev/vg0/vol
SIZE_MIB=${BENCH_VM_VOL_MIB:-1024}
DATA_MIB=${BENCH_VM_DATA_MIB:-64}
make_pool $VG $POOL 64k 1800M "$1"
archive_disk "$2"
make_thin $VG $POOL vol ${SIZE_MIB}M
# DATA_MIB pieces of 1 MiB of random data, spread evenly over the LV.
step=$((SIZE_MIB / DATA_MIB))
for i in $(seq 0 $((DATA_MIB - 1))); do write_rand $DEV $((i * step * MiB)) $MiB; done
sync
prov=$(lvs --noheadings --units b --nosuffix -o lv_size,data_percent $VG/vol |
  awk '{printf "%d", $1 * $2 / 100}')
META=/tmp/meta-bench
arch_init $VG/$POOL bench
sb_ok add vol
now() { cut -d' ' -f1 /proc/uptime; }
# io_run OUT CMD...: CMD's wall seconds, read_bytes and rchar into OUT.
io_run() {
  local out=$1 t0
  shift
  sync; echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  SPARSEBAK_META_DIR=$META bash -c '"$@" </dev/null >/tmp/cmd.out 2>&1; rc=$?; cat /proc/$$/io >/tmp/cmd.io; exit $rc' _ "$@" ||
    { cat /tmp/cmd.out; die "$* failed"; }
  awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "wall=%.2f\n", b-a}' >"$out"
  awk '$1 == "read_bytes:" {print "read=" $2} $1 == "rchar:" {print "rchar=" $2}' /tmp/cmd.io >>"$out"
  cat /tmp/cmd.out >&2
}
val() { sed -n "s/^$2=//p" "$1"; }
io_run /tmp/first sparsebak -u send vol
io_run /tmp/dd dd if=$DEV of=/dev/null bs=4M
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1048576}'; }
fr=$(val /tmp/first read) dr=$(val /tmp/dd read)
{
  echo "| operation (thin LV ${SIZE_MIB} MiB, ${DATA_MIB} MiB of data, pool chunk 64 KiB; provisioned $(mib "$prov") MiB) | wall s in the VM | read from disk (MiB) | read / provisioned |"
  echo "|---|---:|---:|---:|"
  echo "| first send | $(val /tmp/first wall) | $(mib "$fr") | $(awk -v a="$fr" -v b="$prov" 'BEGIN{printf "%.2f", a/b}') |"
  echo "| baseline: dd bs=4M of the whole LV | $(val /tmp/dd wall) | $(mib "$dr") | $(awk -v a="$dr" -v b="$prov" 'BEGIN{printf "%.2f", a/b}') |"
} >/share/result.md
cat /share/result.md
