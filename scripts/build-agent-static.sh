#!/usr/bin/env bash
# Build a statically linked sparsebak-agent, for copying to backup VMs and
# ssh hosts whose C library may not match the build machine's.
#
#   scripts/build-agent-static.sh
#
# With glibc and +crt-static, rustc links a static-pie: no NEEDED libraries,
# no program interpreter. `--target` is given explicitly so RUSTFLAGS apply
# to the agent only, not to build scripts and proc macros (which must stay
# dynamic to run on the build host).
#
# Prints the binary's path on the first line of stdout and its size on the
# second; cargo's output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-unknown-linux-gnu
host=$(rustc -vV | sed -n 's/^host: //p')
if [ "$host" != "$target" ]; then
    echo "build-agent-static: this script builds for $target; the host is $host" >&2
    exit 1
fi

RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release -p sparsebak-agent --target "$target" >&2

out="${CARGO_TARGET_DIR:-target}/$target/release/sparsebak-agent"
if [ ! -x "$out" ]; then
    echo "build-agent-static: cargo succeeded but $out is missing" >&2
    exit 1
fi
size=$(stat -c %s "$out")
echo "$out"
echo "size: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
