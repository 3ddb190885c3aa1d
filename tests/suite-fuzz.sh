#!/usr/bin/env bash
# The fuzz targets (fuzz/, cargo-fuzz): build them all, then run each for a
# short time from the committed seed corpus (fuzz/seeds/<target>/).
#
#   tests/suite-fuzz.sh                    every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=600 tests/suite-fuzz.sh   longer runs
#   FUZZ_TARGETS="proto names" tests/suite-fuzz.sh   only these targets
#   FUZZ_ARGS="-max_len=65536" tests/suite-fuzz.sh  more libFuzzer flags
#
#   FUZZ_TOOLCHAIN=stable tests/suite-fuzz.sh   this toolchain (a rustup name)
#
# cargo-fuzz passes -Z flags (sanitizer, coverage instrumentation) that only
# a nightly compiler takes. The suite uses the nightly toolchain when one is
# installed, else the stable one with RUSTC_BOOTSTRAP=1 (which lets stable
# take -Z flags: this is how CI runs it, CI having only stable rustup), and
# prints which. RUSTC_BOOTSTRAP=1 is set for any toolchain that is not a
# nightly. It never skips: a toolchain that is missing or cannot build the
# targets is a failure. cargo-fuzz is installed if missing (`cargo install
# cargo-fuzz --locked`, ~40 s). tests/run-all.sh sets FUZZ_SECONDS for CI.
#
# Nothing is written into the repo tree: the build goes to FUZZ_TARGET_DIR
# (default under ~/.cache, kept between runs; ~2 GiB), the corpus is a
# temporary copy of the seeds, and the inputs of a failing run are kept in a
# directory under ${TMPDIR:-/tmp} whose path is printed. Two targets run at
# a time.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh

command -v rustup >/dev/null || fail "no rustup: the fuzz suite needs a Rust toolchain managed by rustup"
tc=${FUZZ_TOOLCHAIN:-}
if [ -z "$tc" ]; then
    if rustup run nightly rustc --version >/dev/null 2>&1; then
        tc=nightly
    else
        tc=stable
    fi
fi
rustc_v=$(rustup run "$tc" rustc --version 2>&1) ||
    fail "toolchain '$tc' cannot run rustc: ${rustc_v%%$'\n'*}"
# Plain variables, not exported yet: cargo-fuzz itself is built without it.
case $rustc_v in
    *-nightly*) boot=() how="" ;;
    *) boot=(RUSTC_BOOTSTRAP=1) how=" with RUSTC_BOOTSTRAP=1" ;;
esac
echo "fuzz: toolchain $tc ($rustc_v)$how"
if ! cargo "+$tc" fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    env -u RUSTC_BOOTSTRAP cargo "+$tc" install cargo-fuzz --locked ||
        fail "cannot install cargo-fuzz (cargo +$tc install cargo-fuzz --locked)"
fi
cargo "+$tc" fuzz --version >/dev/null 2>&1 || fail "cargo +$tc fuzz does not run after installing it"
[ "${#boot[@]}" -eq 0 ] || export "${boot[@]}"
fz=(cargo "+$tc" fuzz)

secs=${FUZZ_SECONDS:-20}
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    fail "FUZZ_SECONDS must be a positive number, not '$secs'"
fi
target_dir=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsebak/fuzz-target}
triple=$(rustup run "$tc" rustc -vV | sed -n 's/^host: //p')
bin_dir="$target_dir/$triple/release"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t all < <(cd fuzz && "${fz[@]}" list)
[ "${#all[@]}" -gt 0 ] || fail "cargo fuzz list found no targets"
read -r -a targets <<<"${FUZZ_TARGETS:-${all[*]}}"
read -r -a extra <<<"${FUZZ_ARGS:-}"

start=$(date +%s)
# 16 codegen units: a much faster cold build than cargo-fuzz's default of
# 1, for slightly slower runs (fine for a short CI run).
build=("${fz[@]}" build --codegen-units 16 --target-dir "$target_dir")
if [ -n "${FUZZ_TARGETS:-}" ]; then
    for t in "${targets[@]}"; do
        (cd fuzz && "${build[@]}" "$t") || fail "fuzz target $t does not build"
    done
else
    (cd fuzz && "${build[@]}") || fail "the fuzz targets do not build"
fi
ok "built ${#targets[@]} fuzz targets in $(($(date +%s) - start))s"

# Run one target for $secs seconds from a temporary copy of its seeds.
run_one() {
    local t=$1
    local corpus="$tmp/corpus/$t" art="$tmp/art/$t"
    [ -x "$bin_dir/$t" ] || { echo "$t: no binary $bin_dir/$t" >"$tmp/$t.log"; return 1; }
    mkdir -p "$corpus" "$art"
    if [ -d "fuzz/seeds/$t" ]; then
        cp -r "fuzz/seeds/$t/." "$corpus/"
    fi
    # An input over 10 s or a run over 2 GiB of memory is a failure too.
    "$bin_dir/$t" "$corpus" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$art/" -print_final_stats=1 "${extra[@]}" >"$tmp/$t.log" 2>&1
}

failed=()
report() {
    local t=$1 rc=$2 runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log" | tail -1)
    if [ "$rc" = 0 ]; then
        ok "$t: ${runs:-?} runs in ${secs}s, no crash"
        return
    fi
    failed+=("$t")
    local keep
    keep=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-fuzz-$t.XXXXXX")
    cp -r "$tmp/art/$t/." "$keep/" 2>/dev/null || true
    cp "$tmp/$t.log" "$keep/fuzz.log"
    echo "FAIL: fuzz target $t (exit $rc); its log ends:" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$tmp/$t.log" | head -20 >&2 || true
    local a
    for a in "$keep"/*; do
        [ "$(basename "$a")" = fuzz.log ] && continue
        echo "  artifact of $t: $a (reproduce: cd fuzz && ${boot[*]}${boot:+ }cargo +$tc fuzz run $t $a)" >&2
    done
    echo "  full log: $keep/fuzz.log" >&2
}

# Two at a time (CI has two cores); each records its exit status.
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do
        wait -n || true
    done
    {
        rc=0
        run_one "$t" || rc=$?
        echo "$rc" >"$tmp/$t.rc"
    } &
done
wait
for t in "${targets[@]}"; do
    report "$t" "$(cat "$tmp/$t.rc" 2>/dev/null || echo "no status")"
done

[ "${#failed[@]}" -eq 0 ] || fail "fuzz targets found crashes: ${failed[*]}"
echo "fuzz suite passed: ${#targets[@]} targets, ${secs}s each, $(($(date +%s) - start))s in all"
