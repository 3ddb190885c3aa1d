#!/usr/bin/env bash
# Deduplication index benchmark (docs/BENCHMARKS.md, "Deduplication index"):
# build the index of N synthetic chunk records and time random lookups, for
# each N in DEDUP_SIZES (default 1M 4M 16M 64M), recording the peak RSS with
# /usr/bin/time. Index files go to DEDUP_DIR (default /var/tmp; needs about
# 50 bytes per record free, 200 per manifest entry) and are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${DEDUP_SIZES:-"1000000 4000000 16000000 64000000"}
dir=${DEDUP_DIR:-/var/tmp}
cargo build --release -q -p sparsebak --example dedup_index
bin=target/release/examples/dedup_index
printf '| records | distinct | build s | s per M records | lookup µs | fence table | index file | peak RSS | RSS per M records |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in $sizes; do
    out=$( { /usr/bin/time -f 'maxrss_kib=%M' "$bin" "$n" "$dir"; } 2>&1 )
    python3 - "$n" "$out" <<'PY'
import json, re, sys
n = int(sys.argv[1]); out = sys.argv[2]
j = json.loads(next(l for l in out.splitlines() if l.startswith('{')))
rss = int(re.search(r'maxrss_kib=(\d+)', out).group(1))
m = n / 1e6
print(f"| {n/1e6:g} M | {j['distinct']/1e6:.2f} M | {j['build_s']:.1f} | {j['build_s']/m:.2f} | "
      f"{j['lookup_us']:.1f} | {j['fence_bytes']/2**20:.1f} MiB | {j['index_file_bytes']/2**20:.0f} MiB | "
      f"{rss/1024:.1f} MiB | {rss/1024/m:.2f} MiB |")
PY
done
# The real build path, manifests included (written first, so warm in the
# page cache): DEDUP_MANIFEST_SIZES entries (default 1M 4M; 148 bytes each).
printf '\n| manifest entries | distinct | build s (read manifests + sort) | s per M entries | peak RSS |\n|---:|---:|---:|---:|---:|\n'
msizes=${DEDUP_MANIFEST_SIZES:-"1000000 4000000"}
for n in $msizes; do
    out=$( { /usr/bin/time -f 'maxrss_kib=%M' "$bin" manifests "$n" "$dir"; } 2>&1 )
    python3 - "$n" "$out" <<'PY'
import json, re, sys
n = int(sys.argv[1]); out = sys.argv[2]
j = json.loads(next(l for l in out.splitlines() if l.startswith('{')))
rss = int(re.search(r'maxrss_kib=(\d+)', out).group(1))
print(f"| {n/1e6:g} M | {j['distinct']/1e6:.2f} M | {j['build_from_manifests_s']:.2f} | "
      f"{j['build_from_manifests_s']/(n/1e6):.2f} | {rss/1024:.1f} MiB |")
PY
done
# send --dedup's in-memory map of the run's own chunks, filled to its cap.
out=$( { /usr/bin/time -f 'maxrss_kib=%M' "$bin" run; } 2>&1 )
python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
j = json.loads(next(l for l in out.splitlines() if l.startswith('{')))
rss = int(re.search(r'maxrss_kib=(\d+)', out).group(1))
print(f"\nRun map at its cap: {j['run_map_entries']} entries, peak RSS {rss/1024:.1f} MiB "
      f"({(rss - j['vm_hwm_kib_before'])*1024/j['run_map_entries']:.1f} bytes per entry).")
PY
