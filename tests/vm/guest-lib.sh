# shellcheck shell=sh
# tests/vm/guest-lib.sh - helpers for guest scripts of the sparsebak VM harness.
#
# In the guest this file is at $VM_LIB (/vm/guest-lib.sh):   . "$VM_LIB"
# POSIX sh: works in busybox ash (/bin/sh) and bash. Helpers that fail call `die`
# (exit 1), so a scenario stops at the first broken step even without `set -e`.
#
# Device-mapper names double every hyphen of the VG and LV names:
#   VG test-vg, pool my-pool  ->  /dev/mapper/test--vg-my--pool-tpool
#                                 /dev/mapper/test--vg-my--pool_tmeta
# Thin snapshots carry the activation-skip flag: activate them with `lvchange -ay -K`
# (activate_lv does that).

VM_ASSERTS_OK=0

# log MSG...: timestamped (guest uptime) message on stdout
log() {
  printf '[%s] %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*"
}

# die MSG...: message on stderr, exit 1
die() {
  printf '[%s] FAIL: %s\n' "$(cut -d' ' -f1 /proc/uptime)" "$*" >&2
  exit 1
}

# run CMD [ARG...]: print the command, run it, die if it fails
run() {
  log "+ $*"
  "$@" || die "command failed (status $?): $*"
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
  if [ "$1" = "$2" ]; then
    VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
    log "ok: ${3:-values equal}"
  else
    printf 'ASSERTION FAILED: %s\n--- expected:\n%s\n--- actual:\n%s\n---\n' \
      "${3:-values differ}" "$1" "$2" >&2
    die "assert_eq: ${3:-values differ}"
  fi
}

# assert_ne UNEXPECTED ACTUAL [WHAT]
assert_ne() {
  if [ "$1" != "$2" ]; then
    VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
    log "ok: ${3:-values differ}"
  else
    die "assert_ne: ${3:-values are equal}: '$2'"
  fi
}

# assert_ok CMD [ARG...]: the command must succeed
assert_ok() {
  if "$@"; then
    VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
    log "ok: succeeded: $*"
  else
    die "assert_ok: command failed (status $?): $*"
  fi
}

# assert_fails CMD [ARG...]: the command must fail
assert_fails() {
  if "$@"; then
    die "assert_fails: command unexpectedly succeeded: $*"
  else
    VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
    log "ok: failed as expected: $*"
  fi
}

# assert_same_content FILE_OR_DEV FILE_OR_DEV [WHAT]: byte-identical (cmp)
assert_same_content() {
  if cmp "$1" "$2"; then
    VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1))
    log "ok: ${3:-$1 == $2}"
  else
    die "assert_same_content: ${3:-$1 differs from $2}"
  fi
}

# asserts_summary: print how many assertions passed
asserts_summary() {
  log "$VM_ASSERTS_OK assertion(s) passed"
}

# dm_escape NAME: double the hyphens (device-mapper name component)
dm_escape() {
  printf '%s' "$1" | sed 's/-/--/g'
}

# dm_name VG LV: device-mapper name of VG/LV (e.g. test--vg-my--pool)
dm_name() {
  printf '%s-%s' "$(dm_escape "$1")" "$(dm_escape "$2")"
}

# tpool_dm VG POOL: dm name of the pool's thin-pool target (for dmsetup message/status)
tpool_dm() {
  printf '%s-tpool' "$(dm_name "$1" "$2")"
}

# tmeta_dev VG POOL: the pool's metadata device (for thin_delta/thin_dump -m)
tmeta_dev() {
  printf '/dev/mapper/%s' "$(dm_name "$1" "$2_tmeta")"
}

# make_pool VG POOL CHUNKSIZE SIZE [DISK...]
#   Creates the VG on the disks (pvcreate + vgcreate) unless it already exists (then
#   DISKs are optional), and a thin pool POOL of SIZE with the given chunk size
#   (e.g. 64k, 512k). Extra lvcreate options: $POOL_OPTS (e.g. "--zero n").
make_pool() {
  [ $# -ge 4 ] || die "usage: make_pool VG POOL CHUNKSIZE SIZE [DISK...]"
  _vg=$1 _pool=$2 _chunk=$3 _size=$4
  shift 4
  if ! vgs "$_vg" >/dev/null 2>&1; then
    [ $# -ge 1 ] || die "make_pool: VG $_vg does not exist and no disk given"
    run pvcreate -q -y -ff "$@"
    run vgcreate -q "$_vg" "$@"
  fi
  # shellcheck disable=SC2086
  run lvcreate -q --type thin-pool -L "$_size" --chunksize "$_chunk" ${POOL_OPTS:-} -n "$_pool" "$_vg"
}

# make_thin VG POOL LV SIZE: thin volume of virtual size SIZE in VG/POOL
make_thin() {
  [ $# -eq 4 ] || die "usage: make_thin VG POOL LV SIZE"
  run lvcreate -q -V "$4" --thinpool "$2" -n "$3" "$1"
}

# make_snap VG ORIGIN SNAP: thin snapshot VG/SNAP of VG/ORIGIN (not activated: it has the
# activation-skip flag; use activate_lv)
make_snap() {
  [ $# -eq 3 ] || die "usage: make_snap VG ORIGIN SNAP"
  run lvcreate -q -s -n "$3" "$1/$2"
}

# activate_lv VG LV: activate, ignoring the activation-skip flag (-K)
activate_lv() {
  run lvchange -q -ay -K "$1/$2"
}

# deactivate_lv VG LV
deactivate_lv() {
  run lvchange -q -an "$1/$2"
}

# thin_id VG LV: the thin device id of a thin LV or snapshot
thin_id() {
  _id=$(lvs --noheadings -o thin_id "$1/$2" | tr -d ' ') || die "thin_id: lvs failed for $1/$2"
  [ -n "$_id" ] || die "thin_id: $1/$2 has no thin id"
  printf '%s\n' "$_id"
}

# lv_dev VG LV: the /dev path of an LV
lv_dev() {
  printf '/dev/%s/%s' "$1" "$2"
}

# reserve_metadata_snap VG POOL / release_metadata_snap VG POOL
reserve_metadata_snap() {
  run dmsetup message "$(tpool_dm "$1" "$2")" 0 reserve_metadata_snap
}
release_metadata_snap() {
  run dmsetup message "$(tpool_dm "$1" "$2")" 0 release_metadata_snap
}

# thin_delta_xml VG POOL ID1 ID2: reserve the metadata snapshot, run
# `thin_delta -m --thin1 ID1 --thin2 ID2` on the pool's tmeta, release; XML on stdout.
thin_delta_xml() {
  [ $# -eq 4 ] || die "usage: thin_delta_xml VG POOL ID1 ID2"
  reserve_metadata_snap "$1" "$2" >&2
  _rc=0
  thin_delta -m --thin1 "$3" --thin2 "$4" "$(tmeta_dev "$1" "$2")" || _rc=$?
  release_metadata_snap "$1" "$2" >&2
  [ "$_rc" = 0 ] || die "thin_delta failed (status $_rc)"
}

# delta_ranges: filter thin_delta XML (stdin) to "KIND BEGIN LENGTH" lines for the
# entries that are not <same> (different, left_only, right_only), in chunk units
delta_ranges() {
  sed -n 's/^ *<\(different\|left_only\|right_only\) begin="\([0-9]*\)" length="\([0-9]*\)".*/\1 \2 \3/p'
}

# write_at FILE DEV BYTE_OFFSET: write FILE's bytes into DEV at BYTE_OFFSET (fsync)
write_at() {
  [ $# -eq 3 ] || die "usage: write_at FILE DEV BYTE_OFFSET"
  dd if="$1" of="$2" bs=65536 seek="$3" oflag=seek_bytes conv=notrunc,fsync 2>/dev/null \
    || die "write_at: dd $1 -> $2 @ $3 failed"
}

# random_file FILE SIZE_KIB: FILE with SIZE_KIB KiB of random bytes
random_file() {
  head -c "$(($2 * 1024))" /dev/urandom >"$1" || die "random_file $1 failed"
}

# sha256_of FILE_OR_DEV: its sha256 (hex) on stdout
sha256_of() {
  _sum=$(sha256sum <"$1") || die "sha256_of: cannot read $1"
  printf '%s\n' "${_sum%% *}"
}
