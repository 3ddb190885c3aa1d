#!/usr/bin/env bash
# Start a real one-node Ceph cluster with the RADOS Gateway (S3) on
# loopback, for the object-store tests: one monitor, one OSD (BlueStore on
# a sparse file in its own dir), one radosgw. No systemd, no mgr, no
# device-mapper, no loop device; everything lives under DIR.
#
#   tests/ceph/start.sh DIR        start; prints the settings below on stdout
#   tests/ceph/stop.sh DIR         stop every daemon started here, remove DIR
#
# On success stdout has shell assignments to `eval` (or `source DIR/env`):
#   S3_ENDPOINT=http://127.0.0.1:PORT  S3_ACCESS_KEY=…  S3_SECRET_KEY=…
#   S3_REGION=us-east-1  CEPH_CONF=DIR/ceph.conf
#   S3_TLS_ENDPOINT=https://127.0.0.1:PORT2  S3_CA_FILE=DIR/tls/ca.pem
# (the gateway also speaks TLS, with a server certificate for IP 127.0.0.1
# from a throwaway test CA made here with openssl).
# The daemons' PIDs are in DIR/pids (one "name pid" a line); their logs in
# DIR/log. A failed start stops what it started and prints the logs' tails.
#
# Facts this follows (Ceph 16.2 "Pacific", Debian 12): auth none everywhere;
# pool size 1; `paxos propose interval = 0.1` (start-up 23 s -> ~10 s);
# radosgw's client section needs `auth client required = none` and
# `ms mon client mode = crc`, or it loops on "get_initial_auth_request
# returned -13"; its pools are made before it starts, or the first bucket
# request takes ~2 s. Readiness is a parsed ListAllMyBucketsResult for the
# test user, not any HTTP answer (another server on the port would pass).
#
# The test user's keys are fixed (test data, not secrets): S3_ACCESS_KEY /
# S3_SECRET_KEY in the environment override them.
set -euo pipefail

dir=${1:?usage: tests/ceph/start.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
access=${S3_ACCESS_KEY:-SPARSEBAKTESTKEY0001}
secret=${S3_SECRET_KEY:-sparsebak/test/secret/key/0000000000000001}
region=us-east-1

for tool in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool uuidgen curl openssl; do
    command -v "$tool" >/dev/null ||
        { echo "ceph/start: $tool is missing (run tests/setup-host.sh as root)" >&2; exit 1; }
done
if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    echo "ceph/start: $dir exists and is not empty" >&2
    exit 1
fi
mkdir -p "$dir"/{run,log,mon,osd,rgw,tls}
dir=$(cd "$dir" && pwd)
: >"$dir/pids"

# Three free loopback ports (mon v2, mon v1, rgw): bound by the kernel's
# choice, released, then used at once.
read -r pmon2 pmon1 prgw ptls < <(python3 - <<'EOF'
import socket
ss = [socket.socket() for _ in range(4)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
EOF
)

# A test CA and a server certificate for IP 127.0.0.1 signed by it (a
# self-signed leaf would be a CA used as an end entity, which rustls refuses).
tls=$dir/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=sparsebak-test-ca -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>"$dir/log/tls.out"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=127.0.0.1 -keyout "$tls/key.pem" -out "$tls/req.pem" 2>>"$dir/log/tls.out"
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
openssl x509 -req -in "$tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext" -out "$tls/cert.pem" 2>>"$dir/log/tls.out"

fsid=$(uuidgen)
conf=$dir/ceph.conf
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$pmon2,v1:127.0.0.1:$pmon1]
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
paxos propose interval = 0.1
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
keyring = $dir/keyring
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 8589934592
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 536870912
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.test]
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$prgw ssl_endpoint=127.0.0.1:$ptls ssl_certificate=$tls/cert.pem ssl_private_key=$tls/key.pem
rgw data = $dir/rgw
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw dns name = 127.0.0.1
EOF
: >"$dir/keyring"
export CEPH_CONF=$conf

started=0
cleanup_on_error() {
    [ "$started" = 1 ] && return
    echo "ceph/start: failed; logs:" >&2
    for f in "$dir"/log/*.log "$dir"/log/*.out; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
    "$here/stop.sh" "$dir" --keep >&2 || true
}
trap cleanup_on_error EXIT

# Run daemon $1 (a name for DIR/pids) in the foreground as a background job;
# `-c CONF` on its command line lets stop.sh tell it from a reused PID.
daemon() {
    local name=$1
    shift
    "$@" -c "$conf" -f >"$dir/log/$name.out" 2>&1 &
    echo "$name $!" >>"$dir/pids"
}

# Poll `$@` until it succeeds, at most $1 tenths of a second.
wait_for() {
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "ceph/start: timed out waiting for: $*" >&2
    return 1
}

monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$pmon2,v1:127.0.0.1:$pmon1]" \
    "$dir/monmap" >"$dir/log/monmaptool.out"
ceph-mon --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mon-mkfs.out" 2>&1
daemon mon ceph-mon -i a
wait_for 300 ceph --connect-timeout 2 mon stat

osd_uuid=$(uuidgen)
osd_id=$(ceph osd new "$osd_uuid")
mkdir -p "$dir/osd/ceph-$osd_id"
ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1
daemon osd ceph-osd -i "$osd_id"

# The gateway's pools, made now (one `ceph` process reads every command).
pools=(.rgw.root default.rgw.log default.rgw.control default.rgw.meta
    default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec)
for p in "${pools[@]}"; do
    echo "osd pool create $p 8 8"
    echo "osd pool application enable $p rgw"
done | ceph >"$dir/log/pools.out" 2>&1
osd_up() { ceph osd stat | grep -q '1 up'; }
wait_for 300 osd_up

daemon rgw radosgw -n client.rgw.test
radosgw-admin user create --uid=sparsebak-test --display-name="sparsebak test" \
    --access-key="$access" --secret-key="$secret" >"$dir/log/user.out" 2>&1

endpoint=http://127.0.0.1:$prgw
ready() {
    curl -sS --max-time 2 --aws-sigv4 "aws:amz:$region:s3" --user "$access:$secret" \
        -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
        "$endpoint/" | grep -q '<ListAllMyBucketsResult'
}
wait_for 300 ready

{
    echo "S3_ENDPOINT=$endpoint"
    echo "S3_ACCESS_KEY=$access"
    echo "S3_SECRET_KEY=$secret"
    echo "S3_REGION=$region"
    echo "CEPH_CONF=$conf"
    echo "S3_TLS_ENDPOINT=https://127.0.0.1:$ptls"
    echo "S3_CA_FILE=$tls/ca.pem"
} | tee "$dir/env"
started=1
