#!/usr/bin/env bash
# Release binaries carry no test hooks (the `test-hooks` cargo feature is
# for `cargo test` only; see vm-agent/src/test_hooks.rs).
#
#   tests/suite-test-hooks.sh                       build, then check
#   SB=/path/sparsebak AGENT=/path/sparsebak-agent tests/suite-test-hooks.sh
#                                                   check those, no build
#                                                   (hooked ones must FAIL)
#
# Uses the static release builds that tests/suite-rpm.sh and
# tests/suite-static-agent.sh already make (same commands, so cargo reuses
# them; run alone, it builds them). Checks:
#   * neither binary contains the name of any hook variable;
#   * with every crash hook set to a point a hooked build aborts at, a real
#     prune (dir: source, internal: destination) completes, twice: once with
#     the agent's hooks, once with sparsebak's;
#   * with SPARSEBAK_AGENT_NO_FEATURES set, the agent still announces its
#     optional requests.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh

HOOKS=(SPARSEBAK_AGENT_CRASH_AT SPARSEBAK_AGENT_CRASH_AFTER_RENAMES
    SPARSEBAK_AGENT_NO_FEATURES SPARSEBAK_AGENT_META_PIECE SPARSEBAK_AGENT_RESUME_PIECE
    SPARSEBAK_AGENT_GC_MIN_AGE
    SPARSEBAK_TEST_CRASH_AT)

if [ -z "${SB:-}" ] || [ -z "${AGENT:-}" ]; then
    target=x86_64-unknown-linux-gnu
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build -q --release -p sparsebak --bin sparsebak --target "$target" >&2
    SB=${CARGO_TARGET_DIR:-target}/$target/release/sparsebak
    AGENT=$(scripts/build-agent-static.sh | sed -n 1p) # sed reads all: no SIGPIPE
fi
SB=$(realpath "$SB")
AGENT=$(realpath "$AGENT")
[ -x "$SB" ] && [ -x "$AGENT" ] || fail "release binaries missing: $SB $AGENT"

for b in "$SB" "$AGENT"; do
    for h in "${HOOKS[@]}"; do
        if grep -aqF "$h" "$b"; then
            fail "the release binary $b contains the test hook name $h"
        fi
    done
done
ok "no hook variable name in $(basename "$SB") or $(basename "$AGENT")"

T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-hooks.XXXXXX")
trap 'rm -rf "$T"' EXIT

# One frame: 4-byte big-endian length, then the bytes (all ASCII here).
frame() {
    local n=${#1}
    printf '%b' "$(printf '\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
    printf '%s' "$1"
}
{
    frame '{"op":"hello","protocol":1}'
    frame '{"op":"bye"}'
} >"$T/requests"
SPARSEBAK_AGENT_NO_FEATURES=1 "$AGENT" <"$T/requests" >"$T/replies"
grep -aq '"read_meta"' "$T/replies" ||
    fail "with SPARSEBAK_AGENT_NO_FEATURES set the release agent announced no features: $(cat -v "$T/replies")"
ok "SPARSEBAK_AGENT_NO_FEATURES is ignored"

MP=$(stat -c %m "$T")
mkdir -p "$T/img"
export SPARSEBAK_META_DIR=$T/meta SPARSEBAK_AGENT=$AGENT
"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath -m --relative-to="$MP" "$T/arch")" \
    --source="dir:$T/img" --encrypt=off >/dev/null
"$SB" add v >/dev/null
for i in 1 2 3; do
    head -c 1048576 /dev/urandom >"$T/img/v"
    "$SB" send -u >/dev/null
    [ "$i" = 3 ] || sleep 1 # session names count seconds
done
oldest() {
    "$SB" list v --json | grep -o '"name": *"S_[0-9-]*"' | sed -n '1s/.*"S_\([0-9-]*\)"/\1/p'
}
count() { find "$T/arch/sparsebak/volumes/v" -mindepth 1 -maxdepth 1 -name 'S_*' | wc -l; }
[ "$(count)" = 3 ] || fail "expected 3 sessions in the archive, found $(count)"

# prune_with VAR=VALUE...: prune the oldest session with those hooks set.
prune_with() {
    local s left
    s=$(oldest)
    left=$(($(count) - 1))
    env "$@" "$SB" prune v --session="$s" -u >"$T/out" 2>&1 ||
        fail "prune with $* failed:\n$(cat "$T/out")"
    [ "$(count)" = "$left" ] || fail "prune with $* left $(count) sessions, expected $left"
    ok "prune completes with $*"
}
prune_with SPARSEBAK_AGENT_CRASH_AT=plan SPARSEBAK_AGENT_CRASH_AFTER_RENAMES=0
prune_with SPARSEBAK_TEST_CRASH_AT=journal SPARSEBAK_AGENT_META_PIECE=1
echo "test hooks suite passed"
