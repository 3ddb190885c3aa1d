#!/usr/bin/env bash
# Part 3 of tests/suite-s3.sh: whole archives in a bucket of the real RADOS
# Gateway that suite started (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY,
# S3_REGION and S3_BUCKET in the environment; the bucket exists and is empty).
#
# The store's configuration lives where the agent runs, as a user would
# write it (docs/FORMAT.md §21.8): for internal: in SPARSEBAK_STORE_DIR with
# the keys in the AWS environment; in the qubes:// stand-in VM under its
# home (~/.config/sparsebak/stores, keys in ~/.aws/credentials); on the
# ssh host in a credentials file the configuration names. dom0 only ever
# says s3:NAME.
#
# Every session of every volume is received sha256-equal to its source and
# verifies, with --encrypt=off and with format 2; arch-check --data passes;
# arch-recover rebuilds dom0's metadata from the bucket; the bucket holds no
# volume name in format 2; a --tarfile session is stored like any other;
# prune (also killed at two steps) keeps every remaining session whole;
# a send killed midway is resumed from what the bucket holds; send --dedup
# and arch-deduplicate refer to chunk files already there;
# delete and arch-delete leave nothing behind.
source "$(dirname "$0")/dest-lib.sh"
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}"
start_sshd
make_vm sbvm

conf() { # conf FILE [EXTRA-LINE]
    mkdir -p "$(dirname "$1")"
    printf 'endpoint = %s\nbucket = %s\nregion = %s\nprefix = suite\n%s\n' \
        "$S3_ENDPOINT" "$S3_BUCKET" "$S3_REGION" "${2:-}" >"$1"
}
keys() { printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY"; }
# internal: configuration in SPARSEBAK_STORE_DIR, keys from the environment.
conf "$T/stores/rgw.conf"
export SPARSEBAK_STORE_DIR=$T/stores AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
# The VM: ~/.config/sparsebak/stores and ~/.aws/credentials in its home.
VMH=$STANDIN_QUBES/sbvm/home
conf "$VMH/.config/sparsebak/stores/rgw.conf"
mkdir -p "$VMH/.aws" && keys >"$VMH/.aws/credentials"
# The ssh host: a credentials file named by the configuration (HOME is set
# by this wrapper, standing in for the login user's home there).
SSHH=$T/ssh-home
conf "$SSHH/.config/sparsebak/stores/rgw.conf" "credentials = $SSHH/rgw-keys"
keys >"$SSHH/rgw-keys"
rm -f "$T/host-bin/sparsebak-agent"
printf '#!/bin/sh\nHOME=%s exec %s "$@"\n' "$SSHH" "$AGENT" >"$T/host-bin/sparsebak-agent"
chmod 755 "$T/host-bin/sparsebak-agent"
echo "a passphrase for the suite" >"$T/pass"

# s3_scenario NAME DEST SUBDIR ENCRYPT SESSIONS: arch-init, then SESSIONS
# sends of two volumes (changed in between), every session of each
# received equal and verified; arch-check --data.
s3_scenario() {
    local name=$1 dest=$2 sub=$3 enc=$4 n=$5 i v s
    say "archive in a bucket over $dest (--subdir=$sub, --encrypt=$enc)"
    mkdir -p "$T/img-$name"
    sb "$name" arch-init --dest="$dest" --subdir="$sub" --source="dir:$T/img-$name" \
        --encrypt="$enc" --passphrase-file="$T/pass" >"$T/out"
    grep -q "^Initialised archive .* at .*s3:rgw/$sub " "$T/out" || { cat "$T/out"; fail "arch-init over $dest"; }
    write_image 6 "$T/img-$name/vol1"
    write_image 3 "$T/img-$name/vol2"
    sb "$name" add vol1 >/dev/null
    sb "$name" add vol2 >/dev/null
    declare -gA SUMS
    for i in $(seq "$n"); do
        [ "$i" = 1 ] || { sleep 1; change_image "$T/img-$name/vol1"; change_image "$T/img-$name/vol2"; }
        sb "$name" send -u >"$T/out" || { cat "$T/out"; fail "send $i over $dest"; }
        for v in vol1 vol2; do
            s=$(sessions "$name" $v | tail -n 1)
            SUMS[$name/$v/$s]=$(sha "$T/img-$name/$v")
        done
    done
    check_all "$name" "$dest" "$n"
    sb "$name" arch-check --data >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-check --data over $dest"; }
    grep -q "no problems" "$T/out" || { cat "$T/out"; fail "arch-check --data over $dest"; }
    ok "arch-check --data over $dest: no problems"
}

# check_all NAME DEST N [VOLS...]: each volume (default vol1 vol2) has N
# sessions, each restores equal to its source as sent; the newest verifies
# (arch-check --data reads every chunk of every session as well).
check_all() {
    local name=$1 dest=$2 n=$3 v s
    shift 3
    local vols=("$@")
    [ $# -gt 0 ] || vols=(vol1 vol2)
    for v in "${vols[@]}"; do
        [ "$(sessions "$name" $v | wc -l)" = "$n" ] || fail "$v over $dest: expected $n sessions"
        for s in $(sessions "$name" $v); do
            sb "$name" receive $v --session="$s" --save-to="$T/restored" -u >/dev/null
            [ "$(sha "$T/restored")" = "${SUMS[$name/$v/$s]}" ] || fail "$v session $s over $dest restored differently"
        done
        sb "$name" verify $v --session="$s" >"$T/out"
        grep -q "^Verified $v session $s" "$T/out" || { cat "$T/out"; fail "verify $v $s over $dest"; }
        ok "$dest: every one of the $n sessions of $v restores sha256-equal; the newest verifies"
    done
    rm -f "$T/restored"
}

declare -A SUMS=()
SECONDS=0
s3_scenario int internal:s3:rgw plain off 3
s3_scenario vm qubes://sbvm/s3:rgw enc on 2
s3_scenario ssh ssh://sbtest-host/s3:rgw viassh off 2

# The bucket sees ciphertext and keyed names: no volume name in any key of
# the format 2 archive; the plain one names its volumes.
keys_of() { listing "$1" | grep -o '<Key>[^<]*' | sed 's/<Key>//'; }
listing() {
    curl -sS --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$S3_ENDPOINT/$S3_BUCKET?list-type=2&prefix=suite%2F$1%2F"
}
listing plain | grep -q '<Key>suite/plain/sparsebak/volumes/vol1/' || fail "the plain archive's listing does not show vol1"
listing enc | grep -q '<Key>suite/enc/sparsebak/data/' || fail "the format 2 archive's listing shows no packs"
! listing enc | grep -q 'vol[12]' || fail "a volume name appears in the format 2 archive's object names"
ok "format 2 in a bucket: no volume name in any object name (the plain archive shows them)"

# Resume: dom0 killed midway through a send through a slowed agent (its
# input at 4 MiB/s); the agent sees its input end, uploads the pack it was
# filling and records what it holds; the next send keeps those chunk files
# (read back and checked by the agent) and sends only the rest.
say "resume of an interrupted send into a bucket"
conf "$T/stores/small.conf" "pack_mib = 1"
mkdir -p "$T/img-res"
head -c $((24 << 20)) /dev/urandom >"$T/img-res/vol1"
sb res arch-init --dest=internal:s3:small --subdir=resume --source="dir:$T/img-res" --encrypt=off >/dev/null
sb res add vol1 >/dev/null
cat >"$T/slow-agent" <<EOF
#!/usr/bin/env bash
# Test wrapper (tests/s3-archives.sh): record the pid, slow the input down.
echo \$\$ >"$T/slow-agent.pid"
exec < <(exec pv -q -L 4m)
exec "$AGENT" "\$@"
EOF
chmod 755 "$T/slow-agent"
resume_keys() { listing resume | grep -o '<Key>[^<]*' | sed 's/<Key>//'; }
SPARSEBAK_AGENT=$T/slow-agent SPARSEBAK_META_DIR=$T/meta-res "$BIN/sparsebak" send -u >"$T/out" 2>&1 &
pid=$!
for _ in $(seq 300); do
    [ "$(resume_keys | grep -c '/data/')" -ge 6 ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$T/out"; fail "the slowed send ended before it could be killed"; }
    sleep 0.1
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
# The agent, orphaned, records what it holds and releases its lease, then ends.
for _ in $(seq 150); do kill -0 "$(cat "$T/slow-agent.pid")" 2>/dev/null || break; sleep 0.1; done
resume_keys | grep -q '/held$' || fail "the agent recorded nothing held after dom0 was killed"
sb res send -u >"$T/out" 2>&1 || { cat "$T/out"; fail "the send after the killed one"; }
sent=$(sed -n 's/^  resumed .*; \([0-9]*\) bytes sent$/\1/p' "$T/out")
[ -n "$sent" ] || { cat "$T/out"; fail "the send after the killed one did not resume"; }
[ "$sent" -lt $((20 << 20)) ] || fail "the resumed send sent $sent bytes of about 24 MiB"
! resume_keys | grep -q '/held$' || fail "a held index remains after the resumed session committed"
sb res receive vol1 --save-to="$T/restored" -u >/dev/null
[ "$(sha "$T/restored")" = "$(sha "$T/img-res/vol1")" ] || fail "the resumed session restored differently"
sb res arch-check --data >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-check --data after the resume"; }
rm -f "$T/restored"
ok "resume: dom0 killed midway; the next send kept what the bucket held and sent $sent bytes of 24 MiB; restores equal"

# Disaster recovery from the bucket, through the VM: a fresh meta dir.
say "arch-recover from the bucket"
mv "$T/meta-vm" "$T/meta-vm.orig"
sb vm arch-recover --dest=qubes://sbvm/s3:rgw --subdir=enc --source="dir:$T/img-vm" \
    --passphrase-file="$T/pass" -u >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-recover"; }
grep -qF "2 volume(s), 4 session(s)" "$T/out" || { cat "$T/out"; fail "arch-recover: unexpected summary"; }
check_all vm qubes://sbvm/s3:rgw 2
# arch-passwd: the header is rewritten with the key wrapped anew; the new
# passphrase recovers the archive, the old one no longer does.
echo "another passphrase" >"$T/pass2"
sb vm arch-passwd --passphrase-file="$T/pass2" >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-passwd"; }
rm -rf "$T/meta-vm2"
expect_fail 1 "passphrase" sb vm2 arch-recover --dest=qubes://sbvm/s3:rgw --subdir=enc \
    --source="dir:$T/img-vm" --passphrase-file="$T/pass" -u
rm -rf "$T/meta-vm2"
sb vm2 arch-recover --dest=qubes://sbvm/s3:rgw --subdir=enc --source="dir:$T/img-vm" \
    --passphrase-file="$T/pass2" -u >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-recover with the new passphrase"; }
ok "arch-passwd in a bucket: the new passphrase opens the archive, the old one does not"

# A --tarfile session (stored as packs too).
say "diff, a --tarfile session, send --dedup, arch-deduplicate"
sb int diff vol1 >"$T/out" 2>&1 || { cat "$T/out"; fail "diff of an unchanged volume"; }
grep -q ": 0 of [0-9]* chunks differ" "$T/out" || { cat "$T/out"; fail "diff found differences in an unchanged volume"; }
sleep 1
change_image "$T/img-int/vol1"
rc=0
sb int diff vol1 >"$T/out" 2>&1 || rc=$?
[ "$rc" = 4 ] && grep -q ": [1-9][0-9]* of [0-9]* chunks differ" "$T/out" || { cat "$T/out"; fail "diff of a changed volume (exit $rc)"; }
ok "diff against the bucket: none for the volume as sent, some after a change (exit 4)"
sb int send -u --tarfile vol1 >/dev/null || fail "send --tarfile after the refusals"
SUMS[int/vol1/$(sessions int vol1 | tail -n 1)]=$(sha "$T/img-int/vol1")
check_all int internal:s3:rgw 4 vol1
ok "a --tarfile session is stored as packs too, and restores"

# send --dedup: a copy of vol1 refers to vol1's chunk files (read back and
# checked by the agent) instead of storing them again; it survives the
# prune of vol1 and the garbage collections below.
cp "$T/img-int/vol1" "$T/img-int/vol3"
sb int add vol3 >/dev/null
sb int send -u --dedup vol3 >"$T/out" 2>&1 || { cat "$T/out"; fail "send --dedup"; }
linked=$(sed -n 's/^  deduplicated: \([0-9]*\) chunks linked.*/\1/p' "$T/out")
[ "${linked:-0}" -gt 0 ] || { cat "$T/out"; fail "send --dedup linked nothing"; }
SUMS[int/vol3/$(sessions int vol3 | tail -n 1)]=$(sha "$T/img-int/vol3")
check_all int internal:s3:rgw 1 vol3
ok "send --dedup into a bucket: $linked chunk files referenced, not stored again"
# arch-deduplicate: a copy sent without --dedup gets a generation whose
# index refers to the kept copies; its own packs are collected
# (SPARSEBAK_AGENT_GC_MIN_AGE=0, as below).
cp "$T/img-int/vol1" "$T/img-int/vol4"
sb int add vol4 >/dev/null
sb int send -u vol4 >/dev/null
SUMS[int/vol4/$(sessions int vol4 | tail -n 1)]=$(sha "$T/img-int/vol4")
packs_before=$(keys_of plain | grep -c '/data/')
SPARSEBAK_AGENT_GC_MIN_AGE=0 sb int -u arch-deduplicate >"$T/out" 2>&1 || { cat "$T/out"; fail "arch-deduplicate"; }
replaced=$(sed -n 's/.* \([0-9]*\) replaced by references to the kept copy.*/\1/p' "$T/out")
[ "${replaced:-0}" -gt 0 ] || { cat "$T/out"; fail "arch-deduplicate replaced nothing (or did not say it made references)"; }
! grep -q "hard link" "$T/out" || { cat "$T/out"; fail "arch-deduplicate in a bucket speaks of hard links"; }
packs_after=$(keys_of plain | grep -c '/data/')
[ "$packs_after" -lt "$packs_before" ] || fail "arch-deduplicate collected no pack ($packs_before -> $packs_after)"
check_all int internal:s3:rgw 1 vol4
check_all int internal:s3:rgw 4 vol1
ok "arch-deduplicate in a bucket: $replaced duplicates now references, packs $packs_before -> $packs_after"

# prune: nothing moves; killed after the target's new generation is
# committed, and again after the absorbed sessions' commits are deleted,
# the next command that uses the archive completes it (dom0's journal, the
# agent's pruning marker); every remaining session restores equal.
say "prune in a bucket"
s1=$(sessions int vol1 | sed -n 1p)
SPARSEBAK_AGENT_CRASH_AT=s3-prune-committed expect_fail 1 "did not finish" sb int -u prune vol1 --session="$s1"
keys_of plain | grep -q '/volumes/vol1/S_.*/pruning-' || fail "no pruning marker after the killed prune"
keys_of plain | grep -q "/volumes/vol1/S_$s1/commit-" || fail "the killed prune deleted before its commit was known"
sb int verify vol1 >"$T/out" 2>&1 || { cat "$T/out"; fail "the command after the killed prune"; }
! keys_of plain | grep -q "/volumes/vol1/S_$s1/\|/pruning-" || fail "the killed prune of vol1 was not completed"
check_all int internal:s3:rgw 3 vol1
s2=$(sessions int vol2 | sed -n 1p)
SPARSEBAK_AGENT_CRASH_AT=s3-prune-uncommitted expect_fail 1 "did not finish" sb int -u prune vol2 --session="$s2"
sb int verify vol2 >"$T/out" 2>&1 || { cat "$T/out"; fail "the command after the second killed prune"; }
! keys_of plain | grep -q "/volumes/vol2/S_$s2/\|/pruning-" || fail "the killed prune of vol2 was not completed"
check_all int internal:s3:rgw 2 vol2
sb int -u prune vol1 --keep-last=2 >"$T/out" 2>&1 || { cat "$T/out"; fail "prune --keep-last=2"; }
check_all int internal:s3:rgw 2 vol1
ok "prune: killed after its commit and midway through its deletions, completed by the next command; every session left restores"

# delete: after its marker is made (what a delete killed right after that
# step leaves; the marker is made here with curl, since a killed agent would
# hold the lease for lease_secs), the volume is gone for readers and the
# next delete finishes; its packs are collected (SPARSEBAK_AGENT_GC_MIN_AGE:
# a test hook, so the test need not wait out the lease), vol1's are not.
say "delete and arch-delete in a bucket"
packs_before=$(keys_of plain | grep -c '/data/')
curl -sS -o /dev/null --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X PUT --data-binary '' \
    "$S3_ENDPOINT/$S3_BUCKET/suite/plain/sparsebak/volumes/vol2/gone"
keys_of plain | grep -q '/volumes/vol2/gone$' || fail "the deletion marker was not made"
expect_fail 1 "volume vol2 is being deleted" sb int receive vol2 --save-to="$T/restored"
SPARSEBAK_AGENT_GC_MIN_AGE=0 sb int -u delete vol2 >"$T/out" 2>&1 || { cat "$T/out"; fail "delete vol2 after the killed one"; }
! keys_of plain | grep -q '/volumes/vol2/' || fail "objects of vol2 remain after delete"
packs_after=$(keys_of plain | grep -c '/data/')
[ "$packs_after" -lt "$packs_before" ] || fail "delete collected no pack ($packs_before before, $packs_after after)"
check_all int internal:s3:rgw 2 vol1
check_all int internal:s3:rgw 1 vol3
check_all int internal:s3:rgw 1 vol4
sb int list | grep -q vol2 && fail "vol2 still listed"
ok "delete: its marker makes vol2 unreadable, the next delete finishes it; packs $packs_before -> $packs_after; vol1 whole"
uuid=$(jq -r .uuid "$T/meta-int/archive.json")
echo "$uuid" | SPARSEBAK_META_DIR=$T/meta-int script -qec "$BIN/sparsebak arch-delete" /dev/null >"$T/out" 2>&1 ||
    { cat "$T/out"; fail "arch-delete"; }
grep -q "Archive $uuid deleted" "$T/out" || { cat "$T/out"; fail "arch-delete said nothing"; }
left=$(keys_of plain | grep -vc '/lock/' || true)
[ "$left" = 0 ] || { keys_of plain; fail "arch-delete left $left objects"; }
sb int arch-init --dest=internal:s3:rgw --subdir=plain --source="dir:$T/img-int" --encrypt=off >/dev/null ||
    fail "arch-init where an archive was deleted"
ok "arch-delete removes every object but the lease's last record; arch-init works there again"

# Bad configuration: each named.
expect_fail 1 "no configuration for store s3:nosuch" sb int2 arch-init --dest=internal:s3:nosuch --source="dir:$T" --encrypt=off
conf "$T/stores/nobucket.conf"
sed -i "s/^bucket = .*/bucket = no-such-bucket-here/" "$T/stores/nobucket.conf"
expect_fail 1 "does not exist" sb int3 arch-init --dest=internal:s3:nobucket --source="dir:$T" --encrypt=off
AWS_SECRET_ACCESS_KEY=wrong expect_fail 1 "refused the credentials" sb int4 arch-init --dest=internal:s3:rgw --subdir=x --source="dir:$T" --encrypt=off
echo "object-store archives: ${SECONDS} s"
