#!/usr/bin/env bash
# The passphrase asked at a terminal (docs/FORMAT.md §18): sparsebak reads it
# from /dev/tty with echo off, so each run here gets a real pseudo-terminal
# as its controlling terminal (tests/tools/tty-drive.py) and types as a
# person would. Checks:
#   - arch-init asks twice; two different answers create nothing;
#   - the passphrase never appears on the terminal (echo is off) nor in the
#     metadata directory; the master key file is 0600;
#   - sends need no passphrase (the key is in dom0's archive.key);
#   - arch-passwd asks for the new passphrase twice; afterwards the old one
#     no longer opens the archive;
#   - arch-recover on a fresh metadata directory: a wrong passphrase is
#     refused with a clear error and writes nothing; the right one rebuilds
#     the metadata, and every session restores equal to its source;
#   - without a terminal (setsid, no controlling tty) and without
#     --passphrase-fd/-file, the error says what to give.
#   tests/suite-passphrase-tty.sh       (KEEP_T=1 keeps the temp dir; ~15 s)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh
command -v python3 >/dev/null || fail "python3 is missing"
command -v setsid >/dev/null || fail "setsid is missing (util-linux)"

cargo test --workspace --no-run -q
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug
export SPARSEBAK_AGENT=$BIN/sparsebak-agent
DRIVE=$REPO/tests/tools/tty-drive.py
T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-tty.XXXXXX")
cleanup() { if [ "${KEEP_T:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi; }
trap cleanup EXIT
MP=$(stat -c %m "$T")
SUB=$(realpath -m --relative-to="$MP" "$T/arch")
PASS1='correct horse battery staple'
PASS2='a second, longer passphrase'
sha() { sha256sum "$1" | cut -d' ' -f1; }

# tty NAME META ANSWERS... -- ARGS: sparsebak ARGS on a terminal; its
# transcript in $T/NAME.tty, its exit status in $RC.
tty() {
    local name=$1 meta=$2
    shift 2
    local pairs=()
    while [ "$1" != -- ]; do pairs+=("$1"); shift; done
    shift
    RC=0
    SPARSEBAK_META_DIR=$meta python3 "$DRIVE" "$T/$name.tty" "${pairs[@]}" -- \
        "$BIN/sparsebak" "$@" || RC=$?
}
no_secret_in() {
    local f
    for f in "$@"; do
        if grep -rqF -e "$PASS1" -e "$PASS2" "$f"; then fail "a passphrase shows in $f"; fi
    done
}

mkdir -p "$T/img"
head -c $((3 << 20)) /dev/urandom >"$T/img/vol1"
INIT=(arch-init "--dest=internal:$MP" "--subdir=$SUB" "--source=dir:$T/img")

# Two different answers: nothing is created.
tty init-differ "$T/meta-x" "passphrase=$PASS1" "again=$PASS2" -- "${INIT[@]}"
[ "$RC" != 0 ] || fail "arch-init accepted two different passphrases"
grep -q "the two passphrases differ" "$T/init-differ.tty" || { cat "$T/init-differ.tty"; fail "no 'differ' message"; }
[ ! -e "$T/arch/sparsebak" ] || fail "arch-init created an archive after two different passphrases"
ok "arch-init refuses two different passphrases and creates nothing"

tty init "$T/meta" "passphrase=$PASS1" "again=$PASS1" -- "${INIT[@]}"
[ "$RC" = 0 ] || { cat "$T/init.tty"; fail "arch-init at a terminal exited $RC"; }
grep -q "^Initialised archive" "$T/init.tty" || { cat "$T/init.tty"; fail "arch-init printed no summary"; }
no_secret_in "$T/init.tty" "$T/meta" "$T/arch"
KEY=$(find "$T/meta" -name archive.key)
[ -n "$KEY" ] || fail "no archive.key in the metadata directory"
[ "$(stat -c %a "$KEY")" = 600 ] || fail "archive.key is mode $(stat -c %a "$KEY"), not 600"
ok "arch-init asked twice with echo off; the passphrase is on no screen or file; archive.key is 0600"

# Sends need no passphrase: run them with no terminal at all.
sb() { SPARSEBAK_META_DIR=$T/meta setsid -w "$BIN/sparsebak" "$@" </dev/null; }
sb add vol1 >/dev/null
SUMS=()
sb send -u >/dev/null
SUMS+=("$(sha "$T/img/vol1")")
sleep 1
dd if=/dev/urandom of="$T/img/vol1" bs=64K seek=7 count=3 conv=notrunc status=none
sb send -u >/dev/null
SUMS+=("$(sha "$T/img/vol1")")
ok "two sends without a terminal or passphrase"

tty passwd "$T/meta" "passphrase=$PASS2" "again=$PASS2" -- arch-passwd
[ "$RC" = 0 ] || { cat "$T/passwd.tty"; fail "arch-passwd at a terminal exited $RC"; }
no_secret_in "$T/passwd.tty" "$T/meta" "$T/arch"
ok "arch-passwd asked for the new passphrase twice, echo off"

# A fresh dom0: the old passphrase no longer opens the archive.
RECOVER=(arch-recover "--dest=internal:$MP" "--subdir=$SUB" "--source=dir:$T/img")
tty recover-old "$T/meta-new" "passphrase=$PASS1" -- "${RECOVER[@]}"
[ "$RC" != 0 ] || fail "arch-recover accepted the old passphrase after arch-passwd"
grep -qi "passphrase" "$T/recover-old.tty" || { cat "$T/recover-old.tty"; fail "the refusal does not mention the passphrase"; }
[ -z "$(find "$T/meta-new" -name archive.key 2>/dev/null)" ] || fail "a refused arch-recover wrote a key"
ok "arch-recover refuses the old passphrase, clearly, writing no key"

tty recover "$T/meta-new" "passphrase=$PASS2" -- "${RECOVER[@]}"
[ "$RC" = 0 ] || { cat "$T/recover.tty"; fail "arch-recover with the new passphrase exited $RC"; }
no_secret_in "$T/recover.tty" "$T/meta-new"
SESSIONS=$(SPARSEBAK_META_DIR=$T/meta-new "$BIN/sparsebak" list vol1 --json | python3 -c \
    'import json,sys; print(" ".join(s["name"].removeprefix("S_") for s in json.load(sys.stdin)))')
i=0
for s in $SESSIONS; do
    out=$T/restored-$i
    SPARSEBAK_META_DIR=$T/meta-new setsid -w "$BIN/sparsebak" receive vol1 "--session=$s" "--save-to=$out" -u </dev/null >/dev/null
    [ "$(sha "$out")" = "${SUMS[$i]}" ] || fail "session $s restored after arch-recover differs from its source"
    i=$((i + 1))
done
[ "$i" = "${#SUMS[@]}" ] || fail "arch-recover found $i sessions, not ${#SUMS[@]}"
ok "arch-recover at a terminal rebuilt the metadata; all $i sessions restore equal"

rc=0
SPARSEBAK_META_DIR=$T/meta-none setsid -w "$BIN/sparsebak" "${RECOVER[@]}" </dev/null >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" != 0 ] || fail "arch-recover without a terminal or passphrase succeeded"
grep -q "passphrase-fd or --passphrase-file" "$T/err" || { cat "$T/err"; fail "no hint at --passphrase-fd/--passphrase-file"; }
ok "without a terminal the error names --passphrase-fd and --passphrase-file"
echo "suite-passphrase-tty: all passed"
