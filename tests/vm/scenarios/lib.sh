# shellcheck shell=bash disable=SC2034  # variables used by the scenarios
# tests/vm/scenarios/lib.sh - sparsebak helpers for the real-LVM scenarios.
#
# Sourced by the guest's test.sh (written by tests/vm/run-suite.sh) after $VM_LIB
# (tests/vm/guest-lib.sh) and before the scenario. bash, `set -eE`.
#
# The archive in use is selected by $META (its SPARSEBAK_META_DIR). For every session a
# scenario sends, `send_vol` records the sha256 of the volume's .tick snapshot (the state
# that was sent) in $SB_STATE/<meta id>/<vol>; `check_restores` receives every recorded
# session into a new thin LV and compares.

# json_sessions: parses `list --json` (copied beside this file by run-suite.sh).
# shellcheck source=tests/json-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/json-lib.sh"

SB_STATE=/tmp/sb-state
mkdir -p "$SB_STATE"
SB_T0=$(cut -d' ' -f1 /proc/uptime)
: "${META:=/tmp/meta}"

# ---------------------------------------------------------------- running sparsebak

# sb ARGS...: run `sparsebak -u ARGS` on the archive $META. Never dies: the exit status is
# in $SB_RC, stdout in $SB_OUT, stderr in $SB_ERR (both also printed, indented).
sb() {
  log "\$ sparsebak $*"
  SB_RC=0
  SPARSEBAK_META_DIR=$META sparsebak -u "$@" </dev/null >/tmp/sb.out 2>/tmp/sb.err || SB_RC=$?
  SB_OUT=$(cat /tmp/sb.out)
  SB_ERR=$(cat /tmp/sb.err)
  sed 's/^/    | /' /tmp/sb.out
  sed 's/^/    ! /' /tmp/sb.err
  [ "$SB_RC" = 0 ] || log "  (exit status $SB_RC)"
}

# sb_ok ARGS...: sparsebak must succeed
sb_ok() {
  sb "$@"
  [ "$SB_RC" = 0 ] || die "sparsebak $* failed with status $SB_RC: $SB_ERR"
}

# sb_fails STATUS TEXT ARGS...: sparsebak must exit with STATUS and print TEXT (fixed
# string) on stderr
sb_fails() {
  local want=$1 text=$2
  shift 2
  sb "$@"
  assert_eq "$want" "$SB_RC" "exit status of: sparsebak $*"
  case $SB_ERR in
    *"$text"*) VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1)); log "ok: stderr contains: $text" ;;
    *) printf 'ASSERTION FAILED: stderr of sparsebak %s\n--- expected to contain:\n%s\n--- actual:\n%s\n---\n' \
         "$*" "$text" "$SB_ERR" >&2
       die "stderr of sparsebak $* lacks: $text" ;;
  esac
}

# assert_contains HAYSTACK NEEDLE WHAT
assert_contains() {
  case $1 in
    *"$2"*) VM_ASSERTS_OK=$((VM_ASSERTS_OK + 1)); log "ok: $3" ;;
    *) printf 'ASSERTION FAILED: %s\n--- expected to contain:\n%s\n--- actual:\n%s\n---\n' "$3" "$2" "$1" >&2
       die "assert_contains: $3" ;;
  esac
}

# arch_init VG/POOL SUBDIR [FACTOR]: a new archive on /mnt/bk for $META
arch_init() {
  rm -rf "$META"
  sb_ok arch-init --source="$1" --dest=internal:/mnt/bk --subdir="$2" --chunk-factor="${3:-1}" --encrypt=off
}

# archive_disk DISK: ext4 on DISK, mounted at /mnt/bk (the archives' destination)
archive_disk() {
  run mkfs.ext4 -q -F "$1"
  mkdir -p /mnt/bk
  run mount -t ext4 "$1" /mnt/bk
}

# ---------------------------------------------------------------- sessions

# sessions VOL: "NAME VOLSIZE CHUNKS" per session (oldest first), from list --json
sessions() {
  SPARSEBAK_META_DIR=$META sparsebak list "$1" --json | json_sessions name volsize chunks
}
session_count() { sessions "$1" | wc -l | tr -d ' '; }
last_session() { sessions "$1" | tail -n 1 | cut -d' ' -f1; }
last_volsize() { sessions "$1" | tail -n 1 | cut -d' ' -f2; }
last_chunks() { sessions "$1" | tail -n 1 | cut -d' ' -f3; }

# tick_dev VG VOL: the device of VOL.tick (dm name, hyphens doubled)
tick_dev() { printf '/dev/mapper/%s' "$(dm_name "$1" "$2.tick")"; }

# sha_head DEV BYTES: sha256 of the first BYTES (a multiple of 64 KiB) of DEV
sha_head() {
  [ $(($2 % 65536)) = 0 ] || die "sha_head: $2 is not a multiple of 64 KiB"
  dd if="$1" bs=65536 count=$(($2 / 65536)) 2>/dev/null | sha256sum | cut -d' ' -f1
}
dev_size() { blockdev --getsize64 "$1"; }

state_file() { printf '%s/%s/%s' "$SB_STATE" "$(printf '%s' "$META" | tr / _)" "$1"; }

# send_vol VG VOL [EXPECTED_CHUNKS|none] [WHAT]: send VOL; with a number, a new session
# must exist and its manifest must have exactly that many chunks; with `none`, no new
# session. Records the sha256 of VOL.tick (the state sent) for check_restores.
send_vol() {
  local vg=$1 vol=$2 want=${3:-} what=${4:-send of $2}
  local before after all
  before=$(session_count "$vol")
  sb_ok send "$vol"
  all=$(sessions "$vol")
  after=$(printf '%s\n' "$all" | grep -c . || true)
  if [ "$want" = none ]; then
    assert_eq "$before" "$after" "$what: no new session"
    return 0
  fi
  assert_eq "$((before + 1))" "$after" "$what: one new session"
  # shellcheck disable=SC2046
  set -- $(printf '%s\n' "$all" | tail -n 1)
  [ -z "$want" ] || assert_eq "$want" "$3" "$what: chunks in the new session $1"
  record_tick "$vg" "$vol" "$1" "$2"
}

# record_tick VG VOL [SESSION VOLSIZE]: remember sha256(VOL.tick) as the content of VOL's
# latest session
record_tick() {
  local vg=$1 vol=$2 s=${3:-} size=${4:-} tick f
  [ -n "$s" ] || s=$(last_session "$vol")
  [ -n "$size" ] || size=$(last_volsize "$vol")
  tick=$(tick_dev "$vg" "$vol")
  assert_eq "$size" "$(dev_size "$tick")" "$vol: size of $vol.tick = volsize of $s"
  f=$(state_file "$vol")
  mkdir -p "$(dirname "$f")"
  printf '%s %s %s\n' "$s" "$size" "$(sha_head "$tick" "$size")" >>"$f"
  log "recorded $vol $s: $(tail -n 1 "$f" | cut -d' ' -f2-)"
}

# recorded_sha VOL [N]: the sha256 recorded for the N-th (1-based; default last) session
recorded_sha() {
  local f; f=$(state_file "$1")
  if [ -n "${2:-}" ]; then sed -n "${2}p" "$f" | cut -d' ' -f3; else tail -n 1 "$f" | cut -d' ' -f3; fi
}
recorded_session() {
  local f; f=$(state_file "$1")
  if [ -n "${2:-}" ]; then sed -n "${2}p" "$f" | cut -d' ' -f1; else tail -n 1 "$f" | cut -d' ' -f1; fi
}

SB_RESTORES=0
# restore_check VG VOL SESSION SHA SIZE: receive SESSION into a new LV, compare, remove it
restore_check() {
  local vg=$1 vol=$2 s=$3 sha=$4 size=$5 lv
  SB_RESTORES=$((SB_RESTORES + 1))
  lv=restore$SB_RESTORES
  sb_ok receive "$vol" --session="${s#S_}" --save-to="/dev/$vg/$lv"
  assert_eq "$size" "$(dev_size "/dev/$vg/$lv")" "$vol $s: size of the restored LV $vg/$lv"
  assert_eq "$sha" "$(sha_head "/dev/$vg/$lv" "$size")" "$vol $s: sha256 of the restore = the snapshot sent"
  run lvremove -q -f "$vg/$lv"
}

# check_restores VG VOL: every recorded session of VOL received into a new LV equals the
# sha256 of the snapshot taken at that session; also the recorded sessions are exactly
# the archive's sessions.
check_restores() {
  local vg=$1 vol=$2 f s size sha
  f=$(state_file "$vol")
  assert_eq "$(sessions "$vol" | cut -d' ' -f1-2)" "$(cut -d' ' -f1-2 "$f")" \
    "$vol: sessions and sizes in the archive = the sessions sent"
  while read -r s size sha <&3; do
    restore_check "$vg" "$vol" "$s" "$sha" "$size"
  done 3<"$f"
}

# restore_latest VG VOL: the latest session equals the current VOL.tick
restore_latest() {
  local vg=$1 vol=$2 size
  size=$(last_volsize "$vol")
  restore_check "$vg" "$vol" "$(last_session "$vol")" "$(sha_head "$(tick_dev "$vg" "$vol")" "$size")" "$size"
}

# ---------------------------------------------------------------- LVM state

# held_root VG POOL: the pool's held metadata root ("-" when no metadata snapshot)
held_root() { dmsetup status "$(tpool_dm "$1" "$2")" | awk '{print $7}'; }

# lv_names VG: the LV names of VG (hidden ones excluded), sorted, one per line
lv_names() { lvs --noheadings -o lv_name "$1" | tr -d ' ' | sort; }

# state_clean VG POOL: no .tock snapshot left, no metadata snapshot reserved
state_clean() {
  assert_eq "" "$(lv_names "$1" | grep '\.tock$' || true)" "$1: no stale .tock snapshot"
  assert_eq "-" "$(held_root "$1" "$2")" "$1/$2: no metadata snapshot reserved"
}

map_file() { printf '%s/volumes/%s/deltamap' "$META" "$1"; }

# write_rand DEV OFFSET BYTES: random data at a byte offset (multiples of 4 KiB), synced
write_rand() {
  if [ $(($2 % 4096)) != 0 ] || [ $(($3 % 4096)) != 0 ]; then die "write_rand: unaligned $2 + $3"; fi
  head -c "$3" /dev/urandom >/tmp/wr.bin
  dd if=/tmp/wr.bin of="$1" bs=65536 seek="$2" oflag=seek_bytes,direct conv=notrunc 2>/dev/null \
    || die "write_rand $1 @ $2 + $3 failed"
}

KiB=1024
MiB=$((1024 * 1024))
CH=65536

# scenario_done: summary line (run-suite.sh checks the marker)
scenario_done() {
  asserts_summary
  log "restores checked: $SB_RESTORES; scenario time $(awk -v a="$SB_T0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{printf "%.0f", b-a}') s"
}
