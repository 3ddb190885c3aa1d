#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this).
#   tests/run-all.sh          everything
#   SKIP_VM=1 tests/run-all.sh   everything but the real-LVM suite under qemu
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s\n' "$*"; }

step "tools"
tests/setup-host.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "layering: no import circles, no function over 100 lines (docs/ARCHITECTURE.md)"
python3 scripts/modcycles.py dom0/src vm-agent/src common/src testing/src
python3 scripts/fnlen.py dom0/src vm-agent/src common/src testing/src

# No separate `cargo build`: `cargo test` builds the binaries too (with the
# test-hooks feature), and the shell suites use those.
step "unit and integration tests"
cargo test --workspace

# tests/suite-fuzz.sh: 10 s a target in CI. On stable (CI has no nightly;
# the suite uses RUSTC_BOOTSTRAP=1) a cold build of all 22 targets plus the
# runs took 8 min 10-20 s on a loaded 2-core machine (build ~6 min 10 s,
# runs ~2 min), plus ~35 s to install cargo-fuzz; the cold build alone took
# 3 min 40 s under less load. Debuginfo is not what costs: line tables only
# built no faster (3 min 58 s beside it).
export FUZZ_SECONDS=${FUZZ_SECONDS:-10}
for t in tests/suite-*.sh; do
    [ -e "$t" ] || continue
    step "$t"
    bash "$t"
done

if [ "${SKIP_VM:-0}" != 1 ] && [ -x tests/vm/run-suite.sh ]; then
    step "real LVM thin suite (qemu)"
    tests/vm/run-suite.sh
fi
echo
echo "all suites passed"
