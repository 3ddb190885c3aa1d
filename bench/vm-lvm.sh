#!/usr/bin/env bash
# Cost of `monitor` and of an incremental send per volume on real LVM thin,
# measured in the qemu VM of tests/vm/ (TCG: emulated, so only the ratios to a
# full send in the same boot mean anything). Appends the result to
# docs/BENCHMARKS.md unless BENCH_DOCS=0.
#   bench/vm-lvm.sh                 (BENCH_VM_VOL_MIB=256)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release --target x86_64-unknown-linux-gnu -p sparsebak -p sparsebak-agent
BIN=$ROOT/target/x86_64-unknown-linux-gnu/release
tests/vm/build.sh
share=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-vmbench.XXXXXX")
trap 'rm -rf "$share"' EXIT
mkdir -p "$share/bin"
cp "$BIN/sparsebak" "$BIN/sparsebak-agent" "$share/bin/"
cp tests/vm/scenarios/lib.sh "$share/lib.sh"
cp bench/vm-lvm-guest.sh "$share/scenario.sh"
cat >"$share/test.sh" <<EOT
#!/bin/bash
set -eEu -o pipefail
. "\$VM_LIB"
mkdir -p /tmp/sbbin && cp /share/bin/* /tmp/sbbin/ && export PATH=/tmp/sbbin:\$PATH
export BENCH_VM_VOL_MIB=${BENCH_VM_VOL_MIB:-256}
. /share/lib.sh
. /share/scenario.sh
EOT
chmod 755 "$share/test.sh"
SPARSEBAK_VM_DISKS=2 SPARSEBAK_VM_DISK_SIZE=2G SPARSEBAK_VM_TIMEOUT=900 tests/vm/run.sh "$share" >"$share/log" 2>&1 || {
    cat "$share/log"; echo "vm-lvm bench: the guest failed" >&2; exit 1; }
[ -s "$share/result.md" ] || { cat "$share/log"; echo "vm-lvm bench: no result" >&2; exit 1; }
cat "$share/result.md"
if [ "${BENCH_DOCS:-1}" != 0 ]; then
    {
        echo
        echo "## LVM thin in the VM: monitor and incremental send"
        echo
        echo "$(date -u +%F), commit $(git rev-parse --short HEAD); command: \`bench/vm-lvm.sh\`."
        echo "Real lvm2 / dm-thin / thin-provisioning-tools in a qemu TCG guest (tests/vm/); the"
        echo "emulated CPU makes absolute times meaningless, so each figure is a ratio to a full"
        echo "send of the same volume in the same boot."
        echo
        cat "$share/result.md"
    } >>docs/BENCHMARKS.md
fi
