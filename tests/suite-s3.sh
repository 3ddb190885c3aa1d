#!/usr/bin/env bash
# Object storage (issue 16), against a real one-node Ceph RADOS Gateway
# started here (tests/ceph/start.sh) and stopped at the end, also on failure.
#
#   tests/suite-s3.sh
#
# Part 1, the store itself: the gateway answers the test user (SigV4, curl),
# a bucket is created, an object written with `If-None-Match: *` reads back
# sha256-equal, and a second create of the same name is refused (412) -
# the conditional create the object layout's lock and commit rely on. Wrong
# keys and a missing bucket get the errors the agent's client maps.
# Part 2: the agent's S3 client tests (`#[ignore]`d in a plain cargo test)
# against this gateway; see below.
# Part 3: sparsebak archives in a bucket of this gateway, end to end
# (tests/s3-archives.sh).
# Part 4: restore-qube from a bucket: qubes on a file-reflink pool (XFS on
# a loop device, qvm-* stand-ins), sent twice, every session restored into
# the qube and under a new name, sha256-equal to the source at that session
# (dom0/tests/it/reflink/qubes_s3.rs, `#[ignore]`d in a plain cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh

command -v radosgw >/dev/null || fail "radosgw is missing: run tests/setup-host.sh as root"
work=$(mktemp -d /tmp/sparsebak-s3.XXXXXX)
ceph=$work/ceph
trap 'tests/ceph/stop.sh "$ceph"; rm -rf "$work"' EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
t0=$(ms)
eval "$(tests/ceph/start.sh "$ceph")"
t1=$(ms)
ok "Ceph (mon, osd, radosgw) up at $S3_ENDPOINT in $(secs $((t1 - t0))) s"

# SigV4 by curl; S3 wants the payload hash header, which curl 7.88 omits.
s3() {
    curl -sS --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "${KEYS:-$S3_ACCESS_KEY:$S3_SECRET_KEY}" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
code() { s3 -o "$work/body" -w '%{http_code}' "$@"; }

[ "$(code -X PUT "$S3_ENDPOINT/sparsebak-suite")" = 200 ] || fail "cannot create a bucket: $(cat "$work/body")"
ok "bucket created"
head -c 3000000 /dev/urandom >"$work/obj"
[ "$(code -T "$work/obj" -H 'If-None-Match: *' "$S3_ENDPOINT/sparsebak-suite/a/obj")" = 200 ] ||
    fail "conditional create failed: $(cat "$work/body")"
[ "$(code "$S3_ENDPOINT/sparsebak-suite/a/obj")" = 200 ] || fail "cannot read the object back"
cmp -s "$work/obj" "$work/body" || fail "object read back differs from what was written"
ok "3 MB object written with If-None-Match: * reads back equal ($(sha256sum <"$work/body" | cut -c1-16)…)"
[ "$(code -T "$work/obj" -H 'If-None-Match: *' "$S3_ENDPOINT/sparsebak-suite/a/obj")" = 412 ] ||
    fail "a second If-None-Match: * create was not refused with 412: $(cat "$work/body")"
ok "a second conditional create of the same name is refused (412)"
c=$(KEYS="$S3_ACCESS_KEY:wrong-secret" code "$S3_ENDPOINT/sparsebak-suite/a/obj")
[ "$c" = 403 ] && grep -q SignatureDoesNotMatch "$work/body" || fail "a wrong secret got $c: $(cat "$work/body")"
ok "a wrong secret is refused (403 SignatureDoesNotMatch)"
c=$(code "$S3_ENDPOINT/no-such-bucket/x")
[ "$c" = 404 ] && grep -q NoSuchBucket "$work/body" || fail "a missing bucket got $c: $(cat "$work/body")"
ok "a missing bucket is reported (404 NoSuchBucket)"

# Part 2, the agent's S3 client (vm-agent/src/s3/) on the same gateway,
# directly and through the fault proxy (vm-agent/tests/it/s3/).
[ "$(code -X PUT "$S3_ENDPOINT/sparsebak-it")" = 200 ] || fail "cannot create bucket sparsebak-it: $(cat "$work/body")"
export S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY S3_REGION CEPH_CONF S3_TLS_ENDPOINT S3_CA_FILE
ta=$(ms)
S3_BUCKET=sparsebak-it timeout 300 cargo test -q -p sparsebak-agent --test it s3:: -- --ignored 2>&1 | tee "$work/cargo.log"
grep -qE '^test result: ok\. 15 passed' "$work/cargo.log" || fail "the S3 client tests did not all pass (15 expected)"
ok "S3 client against the real gateway and the fault proxy: 15 tests in $(secs $(($(ms) - ta))) s"

# Part 3: whole archives in a bucket (send, receive, verify, arch-check,
# arch-recover over internal:, qubes:// and ssh://; the refusals).
[ "$(code -X PUT "$S3_ENDPOINT/sparsebak-archives")" = 200 ] || fail "cannot create bucket sparsebak-archives: $(cat "$work/body")"
tb=$(ms)
S3_BUCKET=sparsebak-archives tests/s3-archives.sh
ok "archives in a bucket: $(secs $(($(ms) - tb))) s"

# Part 4: restore-qube from a bucket (the it binary and the test build of
# the agent are built by Part 3's `cargo test --workspace --no-run`).
[ "$(code -X PUT "$S3_ENDPOINT/sparsebak-qubes")" = 200 ] || fail "cannot create bucket sparsebak-qubes: $(cat "$work/body")"
tq=$(ms)
S3_BUCKET=sparsebak-qubes timeout 300 cargo test -q -p sparsebak --test it reflink::qubes_s3 -- --ignored 2>&1 | tee "$work/cargo-qubes.log"
grep -qE '^test result: ok\. 1 passed' "$work/cargo-qubes.log" || fail "restore-qube from a bucket did not pass"
ok "restore-qube from a bucket (reflink pool on XFS, 2 sessions, into the qube and --as): $(secs $(($(ms) - tq))) s"

t2=$(ms)
tests/ceph/stop.sh "$ceph"
t3=$(ms)
ok "Ceph stopped in $(secs $((t3 - t2))) s; suite took $(secs $((t3 - t0))) s"
