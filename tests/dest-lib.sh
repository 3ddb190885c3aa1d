# shellcheck shell=bash
# Shared by tests/suite-dest-*.sh: a real OpenSSH server on loopback, "VMs"
# for the qrexec-client stand-in (tests/standins/), and the send / receive /
# verify scenario that every destination kind must pass.
#
# Sourcing it installs what is missing (Debian, as root), builds the
# workspace, creates $T (removed on exit) and defines the helpers below.
# Nothing outside $T is touched except: packages, /run/sshd (sshd's
# privilege separation dir), and the background sshd, killed on exit by pid.

set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=tests/json-lib.sh
. "$REPO/tests/json-lib.sh"

say() { printf '\n--- %s\n' "$*"; }
# shellcheck source=tests/check-lib.sh
. "$REPO/tests/check-lib.sh"

# ---------------------------------------------------------------- tools
dest_install_tools() {
    local need=()
    command -v ssh >/dev/null || need+=(openssh-client)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)
    command -v ssh-keygen >/dev/null || need+=(openssh-client)
    command -v pv >/dev/null || need+=(pv)
    command -v flock >/dev/null || need+=(util-linux)
    command -v sha256sum >/dev/null || need+=(coreutils)
    command -v jq >/dev/null || need+=(jq)
    [ "${#need[@]}" -eq 0 ] && return 0
    [ "$(id -u)" = 0 ] || fail "missing ${need[*]}; install them (needs root)"
    # Keep the package scripts from starting a system-wide sshd.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
}
dest_install_tools

# The binaries `cargo test` builds (with the test-hooks feature, which no
# suite here sets off): after it, in tests/run-all.sh, nothing is compiled.
cargo test --workspace --no-run -q
BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug
AGENT=$BIN/sparsebak-agent
[ -x "$AGENT" ] || fail "no agent at $AGENT"

T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-dest.XXXXXX")
SSHD_PID=
BG_PIDS=()
dest_cleanup() {
    local p
    for p in "${BG_PIDS[@]}" $SSHD_PID; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "${KEEP_T:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi
}
trap dest_cleanup EXIT

# The archive lives on whatever file system holds $T: --dest names its
# mountpoint (the agent checks that it is one) and --subdir the path below.
MP=$(stat -c %m "$T")
mkdir -p "$T/dom0-bin" "$T/host-bin" "$T/ssh"
ln -s "$AGENT" "$T/host-bin/sparsebak-agent"

export SPARSEBAK_AGENT=$AGENT
export SPARSEBAK_SSH=$T/dom0-bin/ssh
export SPARSEBAK_QREXEC_CLIENT=$REPO/tests/standins/qrexec-client
export SPARSEBAK_QVM_START=$REPO/tests/standins/qvm-start
export STANDIN_QUBES=$T/qubes
mkdir -p "$STANDIN_QUBES"

# ---------------------------------------------------------------- ssh
# make_ssh_wrapper PATH PIDFILE: a wrapper around the real ssh client.
make_ssh_wrapper() {
    cat >"$1" <<EOF
#!/usr/bin/env bash
# Test wrapper around the real ssh client (written by tests/dest-lib.sh).
# It points ssh at the suite's temporary config (sparsebak adds only -T and
# -e none and otherwise leaves ssh's config alone), records its pid so the
# link-failure suite can kill this very process, and throttles both
# directions with pv while $T/slow exists.
printf '%s\n' "\$*" >>"$2.args"
echo \$\$ >"$2"
if [ -e "$T/slow" ]; then
    exec < <(exec pv -q -L "\$(cat "$T/slow")") > >(exec pv -q -L "\$(cat "$T/slow")")
fi
exec /usr/bin/ssh -F "$T/ssh/config" "\$@"
EOF
    chmod 755 "$1"
}
make_ssh_wrapper "$T/dom0-bin/ssh" "$T/dom0-ssh.pid"

# Start sshd on a free loopback port with a temporary host key; root logs
# in with a temporary key; PATH in sessions starts with $T/host-bin, which
# holds sparsebak-agent (remove the link to play a host without the agent).
start_sshd() {
    ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$T/ssh/id"
    cp "$T/ssh/id.pub" "$T/ssh/authorized_keys"
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    for _ in 1 2 3 4 5 6 7 8; do
        SSH_PORT=$((20000 + RANDOM % 40000))
        cat >"$T/ssh/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $T/ssh/host_key
PidFile none
AuthorizedKeysFile $T/ssh/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
UsePAM no
SetEnv PATH=$T/host-bin:/usr/bin:/bin
LogLevel ERROR
EOF
        /usr/sbin/sshd -D -e -f "$T/ssh/sshd_config" 2>>"$T/ssh/sshd.log" &
        SSHD_PID=$!
        cat >"$T/ssh/config" <<EOF
Host sbtest-host
    HostName 127.0.0.1
    Port $SSH_PORT
    User root
Host *
    IdentityFile $T/ssh/id
    IdentitiesOnly yes
    UserKnownHostsFile $T/ssh/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    LogLevel ERROR
EOF
        echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$T/ssh/host_key.pub")" >"$T/ssh/known_hosts"
        local i
        for i in $(seq 50); do
            if /usr/bin/ssh -F "$T/ssh/config" -o ConnectTimeout=2 sbtest-host true 2>/dev/null; then
                echo "sshd pid $SSHD_PID on 127.0.0.1:$SSH_PORT"
                return 0
            fi
            kill -0 "$SSHD_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
        SSHD_PID=
    done
    cat "$T/ssh/sshd.log" >&2
    fail "could not start sshd"
}

# ---------------------------------------------------------------- qubes
# make_vm NAME: a "VM" for the stand-ins, with the real service file. Its
# login profile (services run through `sh -lc`, as in real qrexec) puts its
# bin dir on PATH, where a real VM has the agent in /usr/bin, and bounds how
# long the agent waits on a reply nobody reads (a broken link must free the
# archive lock well within wait_unlocked's 20 s).
make_vm() {
    local d=$STANDIN_QUBES/$1
    mkdir -p "$d/rpc" "$d/bin" "$d/home"
    printf 'PATH=%s/bin:$PATH\nSPARSEBAK_AGENT_STALL_SECS=%s\nexport PATH SPARSEBAK_AGENT_STALL_SECS\n' \
        "$d" "${VM_AGENT_STALL_SECS:-8}" >"$d/home/.profile"
    ln -s "$REPO/qubes-rpc/qubes.SparsebakStore" "$d/rpc/qubes.SparsebakStore"
    ln -s "$AGENT" "$d/bin/sparsebak-agent"
    make_ssh_wrapper "$d/bin/ssh" "$d/relay-ssh.pid"
}

# ---------------------------------------------------------------- sparsebak
# sb NAME ARGS...: sparsebak with NAME's own local metadata.
sb() {
    local name=$1
    shift
    SPARSEBAK_META_DIR=$T/meta-$name "$BIN/sparsebak" "$@"
}

# expect_fail CODE TEXT CMD...: CMD must exit CODE with TEXT in its stderr.
expect_fail() {
    local code=$1 text=$2 rc=0
    shift 2
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" != "$code" ]; then
        cat "$T/out" "$T/err" >&2
        fail "expected exit $code, got $rc: $*"
    fi
    if ! grep -qF -- "$text" "$T/err"; then
        cat "$T/err" >&2
        fail "stderr of '$*' lacks: $text"
    fi
    echo "ok: exit $code with \"$text\""
}

sha() { sha256sum <"$1" | cut -d' ' -f1; }

# sessions NAME VOL: committed session timestamps, oldest first (local metadata).
sessions() {
    sb "$1" list "$2" --json | json_sessions name | sed 's/^S_//'
}

# remote_sessions DIR VOL: committed session dirs in the archive itself.
remote_sessions() {
    local d=$1/sparsebak/volumes/$2
    [ -d "$d" ] || return 0
    find "$d" -mindepth 1 -maxdepth 1 -type d -name 'S_*' ! -name '*-tmp' ! -name '*-orphan' -printf '%f\n' | sort
}

# write_image MIB PATH: random data with a zero stretch in the middle.
write_image() {
    local mib=$1 path=$2
    head -c "$((mib * 1024 * 1024 / 2))" /dev/urandom >"$path"
    head -c "$((mib * 1024 * 1024 / 4))" /dev/zero >>"$path"
    head -c "$((mib * 1024 * 1024 / 4))" /dev/urandom >>"$path"
}

# change_image PATH: overwrite a few small spans.
change_image() {
    local size=$(($(stat -c %s "$1") / 65536)) k
    for k in 1 3 7; do
        dd if=/dev/urandom of="$1" bs=65536 seek=$((size * k / 9)) count=2 conv=notrunc status=none
    done
}

# wait_unlocked ARCHDIR: the agent of a broken link must let go of the
# archive lock (it sees EOF and exits); wait for that, at most 20 s.
wait_unlocked() {
    local i
    for i in $(seq 200); do
        if flock -n "$1/sparsebak/.lock" true; then return 0; fi
        sleep 0.1
    done
    fail "the archive lock in $1 is still held 20 s after the link broke"
}

# init_dest NAME DEST: a fresh archive for destination DEST (a URL prefix
# followed by $MP), with one volume "vol1" in $T/img-NAME.
init_dest() {
    local name=$1 dest=$2
    local arch=$T/arch-$name
    mkdir -p "$T/img-$name"
    local sub
    sub=$(realpath -m --relative-to="$MP" "$arch")
    sb "$name" arch-init --dest="$dest" --subdir="$sub" --source="dir:$T/img-$name" --encrypt=off >"$T/out"
    grep -q "^Initialised archive .* at .*$arch (chunk size .* free)\.$" "$T/out" ||
        { cat "$T/out"; fail "arch-init over $dest printed no free space"; }
    sb "$name" add vol1 >/dev/null
}

# check_restores NAME DEST SUMS...: every committed session restores with
# the given sha256 (oldest first) and verifies.
check_restores() {
    local name=$1 dest=$2 s i
    shift 2
    local sums=("$@")
    mapfile -t ses < <(sessions "$name" vol1)
    [ "${#ses[@]}" = "${#sums[@]}" ] || fail "expected ${#sums[@]} sessions over $dest, got ${#ses[@]}"
    [ "$(remote_sessions "$T/arch-$name" vol1 | wc -l)" = "${#sums[@]}" ] ||
        fail "the archive of $dest does not hold exactly ${#sums[@]} sessions"
    for i in "${!ses[@]}"; do
        s=${ses[$i]}
        sb "$name" receive vol1 --session="$s" --save-to="$T/restored-$name" -u >/dev/null
        [ "$(sha "$T/restored-$name")" = "${sums[$i]}" ] ||
            fail "session $s over $dest restored with a different sha256"
        sb "$name" verify vol1 --session="$s" >"$T/out"
        grep -q "^Verified vol1 session $s" "$T/out" || { cat "$T/out"; fail "verify $s over $dest"; }
        echo "ok: $dest session $s restores equal (sha256 ${sums[$i]:0:16}…) and verifies"
    done
    rm -f "$T/restored-$name"
}

# scenario NAME DEST: full send, incremental send, then every session is
# received (sha256 equal to the image as it was sent) and verified. Once
# sparsebak has a prune command, a third session is sent, the oldest is
# pruned (sparsebak 0.2's `prune --session=DT VOL`), and the remaining ones
# must still restore equal. Then a --tarfile session, a --dedup copy of the
# volume, arch-deduplicate, and arch-recover into a fresh meta dir, each
# followed by restoring every session.
scenario() {
    local name=$1 dest=$2
    say "scenario over $dest"
    init_dest "$name" "$dest"
    local img=$T/img-$name/vol1 sums=()
    write_image 4 "$img"
    sums+=("$(sha "$img")")
    sb "$name" send -u >"$T/out"
    grep -q "^Sending to .*$T/arch-$name (.* free)$" "$T/out" ||
        { cat "$T/out"; fail "send over $dest printed no free space"; }
    grep -q "full session" "$T/out" || { cat "$T/out"; fail "no full session"; }
    sleep 1
    change_image "$img"
    sums+=("$(sha "$img")")
    sb "$name" send -u >"$T/out"
    grep -q "incremental session" "$T/out" || { cat "$T/out"; fail "no incremental session"; }
    check_restores "$name" "$dest" "${sums[@]}"

    "$BIN/sparsebak" --help | grep -qE '^ +prune ' || return 0
    sleep 1
    change_image "$img"
    sums+=("$(sha "$img")")
    sb "$name" send -u >/dev/null
    local oldest
    oldest=$(sessions "$name" vol1 | sed -n 1p)
    sb "$name" prune vol1 --session="$oldest" -u >"$T/out" 2>&1 ||
        { cat "$T/out"; fail "prune over $dest failed"; }
    echo "ok: pruned session $oldest over $dest"
    check_restores "$name" "$dest" "${sums[1]}" "${sums[2]}"

    # A tar session, then a copy of the volume sent with --dedup: the tar
    # file and the hard-link members cross this transport too.
    change_image "$img"
    sums+=("$(sha "$img")")
    sb "$name" send -u --tarfile >"$T/out" 2>&1 || { cat "$T/out"; fail "send --tarfile over $dest"; }
    sb "$name" list vol1 | tail -n 1 | grep -q '(tar)$' || fail "no tar session over $dest"
    echo "ok: tar session over $dest"
    check_restores "$name" "$dest" "${sums[1]}" "${sums[2]}" "${sums[3]}"
    cp "$img" "$T/img-$name/vol2"
    sb "$name" add vol2 >/dev/null
    sb "$name" send -u --dedup vol2 >"$T/out" 2>&1 || { cat "$T/out"; fail "send --dedup over $dest"; }
    local v2dir=$T/arch-$name/sparsebak/volumes/vol2 linked
    linked=$(find "$v2dir" -type f -name 'x*' -links +1 | wc -l)
    [ "$linked" -gt 0 ] || fail "send --dedup over $dest stored no hard links"
    sb "$name" receive vol2 --save-to="$T/restored-$name" -u >/dev/null
    [ "$(sha "$T/restored-$name")" = "${sums[3]}" ] || fail "vol2 (deduplicated) over $dest restored differently"
    rm -f "$T/restored-$name"
    echo "ok: send --dedup over $dest: $linked chunk files are hard links, vol2 restores equal"
    sb "$name" arch-deduplicate -u >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-deduplicate over $dest"; }
    grep -q '0 replaced by hard links' "$T/out" || { cat "$T/out"; fail "arch-deduplicate over $dest found work after send --dedup"; }
    check_restores "$name" "$dest" "${sums[1]}" "${sums[2]}" "${sums[3]}"

    # Disaster recovery over this transport: dom0's metadata is lost,
    # arch-recover rebuilds it from the archive, and every session of both
    # volumes restores again. The original meta dir is put back afterwards.
    local sub
    sub=$(realpath -m --relative-to="$MP" "$T/arch-$name")
    mv "$T/meta-$name" "$T/meta-$name.orig"
    sb "$name" arch-recover --dest="$dest" --subdir="$sub" >"$T/out" 2>&1 ||
        { cat "$T/out"; fail "arch-recover over $dest"; }
    grep -qF "2 volume(s), 4 session(s)" "$T/out" || { cat "$T/out"; fail "arch-recover over $dest: unexpected summary"; }
    check_restores "$name" "$dest" "${sums[1]}" "${sums[2]}" "${sums[3]}"
    sb "$name" receive vol2 --save-to="$T/restored-$name" -u >/dev/null
    [ "$(sha "$T/restored-$name")" = "${sums[3]}" ] || fail "vol2 after arch-recover over $dest restored differently"
    rm -f "$T/restored-$name"
    echo "ok: arch-recover over $dest: both volumes, every session restores equal"
    rm -rf "$T/meta-$name"
    mv "$T/meta-$name.orig" "$T/meta-$name"
}
