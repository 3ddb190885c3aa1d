# shellcheck shell=bash disable=SC2086,SC2154,SC2034  # sourced by the generated test.sh in the guest
# Guest side of bench/vm-lvm.sh: cost of monitor and incremental send on a
# real LVM thin volume, as ratios to a full send in the same boot.
set -- $VM_DISKS
VG=vg0 POOL=pool0 DEV=/dev/vg0/vol
SIZE_MIB=${BENCH_VM_VOL_MIB:-256}
make_pool $VG $POOL 64k 1800M "$1"
archive_disk "$2"
make_thin $VG $POOL vol ${SIZE_MIB}M
# realistic content: half random, a quarter text, the rest zeros
write_rand $DEV 0 $((SIZE_MIB * MiB / 2))
# (yes dies of SIGPIPE when head is done: not an error here)
{ yes "sparsebak benchmark line of text for a thin volume" || true; } | head -c $((SIZE_MIB * MiB / 4)) >/tmp/text.bin
dd if=/tmp/text.bin of=$DEV bs=1M seek=$((SIZE_MIB / 2)) oflag=direct conv=notrunc 2>/dev/null
META=/tmp/meta-bench
arch_init $VG/$POOL bench
sb_ok add vol
now() { cut -d' ' -f1 /proc/uptime; }
timed() { local t0; t0=$(now); sb_ok "$@" >&2; awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
full=$(timed send)
# 1% of the volume changes: random 64 KiB writes
n=$((SIZE_MIB * 16 / 100))
for _ in $(seq $n); do
  dd if=/dev/urandom of=$DEV bs=64k count=1 seek=$((RANDOM % (SIZE_MIB * 16))) oflag=direct conv=notrunc 2>/dev/null
done
mon=$(timed monitor)
mon_idle=$(timed monitor)
inc=$(timed send)
idle=$(timed send)
chunks=$(last_chunks vol)
r() { awk -v a="$1" -v b="$full" 'BEGIN{printf "%.3f", a/b}'; }
{
  echo "| operation (volume ${SIZE_MIB} MiB, pool chunk 64 KiB) | wall s in the VM | ratio to full send |"
  echo "|---|---:|---:|"
  echo "| full send | $full | 1.000 |"
  echo "| monitor after 1% of the volume changed ($n random 64 KiB writes) | $mon | $(r "$mon") |"
  echo "| monitor with no changes | $mon_idle | $(r "$mon_idle") |"
  echo "| incremental send of the harvested changes ($chunks chunks) | $inc | $(r "$inc") |"
  echo "| send with no changes (snapshot rotation + thin_delta only) | $idle | $(r "$idle") |"
} >/share/result.md
cat /share/result.md
