#!/usr/bin/env bash
# Single-stream throughput of the agent's S3 client (vm-agent/src/s3/) to a
# real one-node Ceph RADOS Gateway on loopback (tests/ceph/start.sh), by
# object size: what a pack size of the object layout (docs/FORMAT.md §21.1)
# costs per request. Results: docs/BENCHMARKS.md, "Object storage".
#
#   bench/s3-client.sh [TOTAL_MIB] [SIZE_KIB...]     default 256 MiB; 64 1024 8192 65536
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-256}
shift || true
sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(64 1024 8192 65536)
work=$(mktemp -d /tmp/sparsebak-s3bench.XXXXXX)
trap 'tests/ceph/stop.sh "$work/ceph"; rm -rf "$work"' EXIT
cargo build -q --release -p sparsebak-agent --example s3_bench
eval "$(tests/ceph/start.sh "$work/ceph")"
curl -sS -o /dev/null --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT "$S3_ENDPOINT/bench"
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
    target/release/examples/s3_bench "$S3_ENDPOINT" bench "$S3_REGION" "$total" "${sizes[@]}"
