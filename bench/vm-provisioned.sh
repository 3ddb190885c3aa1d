#!/usr/bin/env bash
# The first send of a thin LV against its provisioned data (issue 14 item 2),
# on real LVM thin in the qemu VM of tests/vm/ (TCG: emulated, so absolute
# times mean little; the bytes read are exact): a BENCH_VM_VOL_MIB MiB LV
# (default 1024) holding BENCH_VM_DATA_MIB MiB (default 64) of random data
# in 1 MiB pieces; its first send's bytes read from disk next to the pool's
# provisioned bytes, and dd of the whole LV in the same boot. Prints a
# markdown table; docs/BENCHMARKS.md quotes it by hand.
#   bench/vm-provisioned.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release --target x86_64-unknown-linux-gnu -p sparsebak -p sparsebak-agent
BIN=$ROOT/target/x86_64-unknown-linux-gnu/release
tests/vm/build.sh
share=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-vmprov.XXXXXX")
trap 'rm -rf "$share"' EXIT
mkdir -p "$share/bin"
cp "$BIN/sparsebak" "$BIN/sparsebak-agent" "$share/bin/"
cp tests/vm/scenarios/lib.sh "$share/lib.sh"
cp tests/json-lib.sh "$share/json-lib.sh"
cp bench/vm-provisioned-guest.sh "$share/scenario.sh"
cat >"$share/test.sh" <<EOT
#!/bin/bash
set -eEu -o pipefail
. "\$VM_LIB"
mkdir -p /tmp/sbbin && cp /share/bin/* /tmp/sbbin/ && export PATH=/tmp/sbbin:\$PATH
export BENCH_VM_VOL_MIB=${BENCH_VM_VOL_MIB:-1024} BENCH_VM_DATA_MIB=${BENCH_VM_DATA_MIB:-64}
. /share/lib.sh
. /share/scenario.sh
EOT
chmod 755 "$share/test.sh"
SPARSEBAK_VM_DISKS=2 SPARSEBAK_VM_DISK_SIZE=2G SPARSEBAK_VM_TIMEOUT=900 tests/vm/run.sh "$share" >"$share/log" 2>&1 || {
    cat "$share/log"; echo "vm-provisioned bench: the guest failed" >&2; exit 1; }
[ -s "$share/result.md" ] || { cat "$share/log"; echo "vm-provisioned bench: no result" >&2; exit 1; }
echo "$(date -u +%F), commit $(git rev-parse --short HEAD); command: \`bench/vm-provisioned.sh\`."
echo
cat "$share/result.md"
