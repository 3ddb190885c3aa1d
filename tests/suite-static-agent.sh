#!/usr/bin/env bash
# The statically linked agent: build it with scripts/build-agent-static.sh,
# then prove it needs nothing from the machine it is copied to.
#
#   tests/suite-static-agent.sh                     build, then check
#   AGENT=/path/to/sparsebak-agent tests/suite-static-agent.sh
#                                                   check that binary, no build
#                                                   (a dynamic one must FAIL)
#
# Checks: no NEEDED entries (readelf -d), no INTERP program header
# (readelf -l), ldd lists no libraries, `--version` works, and the copy runs
# with an empty environment, and then chrooted into a directory holding
# nothing but itself, where it creates an archive over the real protocol.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh

if ! command -v readelf >/dev/null; then
    [ "$(id -u)" = 0 ] || fail "readelf is missing: install binutils"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils >/dev/null
fi
command -v ldd >/dev/null || fail "ldd is missing (package libc-bin)"

# Print why $1 is not a static executable, and fail; silent success if it is.
why_not_static() {
    local bin=$1 needed interp lddout
    needed=$(readelf -d "$bin" 2>&1 | grep '(NEEDED)' || true)
    [ -z "$needed" ] || { echo "$bin needs shared libraries (readelf -d):"; echo "$needed"; return 1; }
    interp=$(readelf -lW "$bin" 2>&1 | grep -E '^\s*INTERP|program interpreter' || true)
    [ -z "$interp" ] || { echo "$bin has a program interpreter (readelf -l):"; echo "$interp"; return 1; }
    readelf -h "$bin" >/dev/null 2>&1 || { echo "$bin is not an ELF file"; return 1; }
    lddout=$(ldd "$bin" 2>&1 || true)
    if grep -qE '=>|\.so' <<<"$lddout"; then
        echo "ldd lists libraries for $bin:"
        echo "$lddout"
        return 1
    fi
    grep -qE 'statically linked|not a dynamic executable' <<<"$lddout" ||
        { echo "unexpected ldd output for $bin: $lddout"; return 1; }
}

# The checker must be able to fail: a dynamic build of the agent is refused.
dyn="${CARGO_TARGET_DIR:-target}/debug/sparsebak-agent"
if [ -z "${AGENT:-}" ] && [ -x "$dyn" ]; then
    if why_not_static "$dyn" >/dev/null; then
        fail "the static check accepted the dynamic $dyn"
    fi
    ok "the check refuses the dynamic $dyn"
fi

if [ -n "${AGENT:-}" ]; then
    bin=$AGENT
else
    built=$(scripts/build-agent-static.sh)
    bin=$(sed -n 1p <<<"$built")
    echo "built $bin, $(sed -n 2p <<<"$built")"
fi
[ -x "$bin" ] || fail "$bin is not an executable file"

reason=$(why_not_static "$bin") || fail "$reason"
ok "no NEEDED, no INTERP, ldd: $(ldd "$bin" 2>&1 | head -1 | sed 's/^[[:space:]]*//')"

want="sparsebak-agent $(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
got=$("$bin" --version)
[ "$got" = "$want" ] || fail "--version printed '$got', expected '$want'"
ok "--version: $got"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$bin" "$tmp/sparsebak-agent"
got=$(cd "$tmp" && env -i ./sparsebak-agent --version) ||
    fail "the copy does not run with an empty environment"
[ "$got" = "$want" ] || fail "under env -i, --version printed '$got'"
ok "a copy runs under env -i"

# One frame: 4-byte big-endian length, then the bytes (all ASCII here).
frame() {
    local n=${#1}
    printf '%b' "$(printf '\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
    printf '%s' "$1"
}

if [ "$(id -u)" != 0 ] || ! command -v chroot >/dev/null; then
    echo "skip: the chroot check needs root and chroot(8)"
    echo "static agent suite passed"
    exit 0
fi
# In the chroot there is no /proc, no /lib, no /etc: only the binary. "/"
# is always a mount point to the agent, so it can open an archive at /arch.
header='{\"format\":\"sparsebak-archive\",\"format_version\":1,\"uuid\":\"static-suite\",\"chunk_size\":65536,\"compression\":{\"codec\":\"zstd\",\"level\":3},\"hash\":\"sha256\",\"encryption\":\"none\",\"created_utc\":\"2026-01-01T00:00:00Z\"}'
{
    frame '{"op":"hello","protocol":1}'
    frame '{"op":"open","dest_path":"/arch","mountpoint":"/","write":true}'
    frame "{\"op\":\"init_archive\",\"header\":\"$header\"}"
    frame '{"op":"list_volumes"}'
    frame '{"op":"bye"}'
} >"$tmp/requests"
[ "$(ls -A "$tmp")" = "$(printf 'requests\nsparsebak-agent')" ] || fail "unexpected files in $tmp"
chroot "$tmp" /sparsebak-agent <"$tmp/requests" >"$tmp/replies" 2>"$tmp/stderr" ||
    fail "the agent failed in an empty chroot: $(cat "$tmp/stderr")"
replies=$(grep -ao '"reply":"[a-z_]*"' "$tmp/replies" | tr '\n' ' ')
expect='"reply":"hello" "reply":"opened" "reply":"ok" "reply":"volumes" "reply":"ok" '
[ "$replies" = "$expect" ] || fail "replies in the chroot: $replies\nexpected: $expect\n$(cat -v "$tmp/replies")"
grep -q '"uuid":"static-suite"' "$tmp/arch/sparsebak/archive.json" ||
    fail "no archive.json was written in the chroot"
ok "in an empty chroot it speaks the protocol and creates an archive"
echo "static agent suite passed"
