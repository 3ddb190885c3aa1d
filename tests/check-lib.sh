# tests/check-lib.sh - what every shell suite prints: `ok: WHAT` for a check
# that passed, `FAIL: WHY` on stderr and exit 1 for one that did not.
# Source it: . tests/check-lib.sh (or "$REPO/tests/check-lib.sh").

fail() {
    printf 'FAIL: %b\n' "$*" >&2
    exit 1
}
ok() { echo "ok: $*"; }
