# Shared by the qvm-* TEST STAND-INS in this directory (not Qubes code).
#
# They play Qubes OS dom0's tools for the suites, which cannot run the real
# ones: each "qube" is a directory $QVM_STANDIN_STATE/qubes/NAME holding its
# class, state (Running/Halted), uuid, template, properties (prefs: one
# "name<TAB>value" per line, the non-default ones), features, tags,
# firewall rules and volumes/VOL/{pool,vid,save_on_stop,snap_on_start,
# revisions_to_keep,size}; pools are $QVM_STANDIN_STATE/pools/POOL/{driver,
# volume_group,thin_pool}. Every call is appended to $QVM_STANDIN_STATE/calls
# (the tool and its arguments; an argument that is not plain is
# single-quoted) so tests can assert the exact commands made. Output formats
# follow qubes-core-admin-client (qubesadmin/tools/*.py), quoted in each
# tool; errors follow argparse's `PROG: error: MESSAGE` with its exit codes.
# With QVM_STANDIN_LVM=1 (the VM suite) qvm-create and qvm-volume extend also
# create and extend the real LVs, as qubesd's lvm_thin driver would.
set -u
state=${QVM_STANDIN_STATE:?qvm stand-in: QVM_STANDIN_STATE is not set}
tool=$(basename "$0")

quote_arg() {
    case $1 in
    '' | *[!A-Za-z0-9_.,:/=+@%-]*) printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
    *) printf '%s' "$1" ;;
    esac
}

log_call() {
    local line=$tool a
    for a in "$@"; do line="$line $(quote_arg "$a")"; done
    printf '%s\n' "$line" >>"$state/calls"
}

die() { # die CODE MESSAGE
    local code=$1
    shift
    echo "$tool: error: $*" >&2
    exit "$code"
}

qdir() { printf '%s/qubes/%s' "$state" "$1"; }

need_qube() {
    [ -n "$1" ] && [ -d "$(qdir "$1")" ] || die 2 "no such domain: '$1'"
}

# The non-default properties, "name<TAB>value".
get_pref() { awk -F '\t' -v k="$2" '$1 == k { print $2; found=1 } END { exit !found }' "$(qdir "$1")/prefs"; }

set_pref() { # qube name value
    local f
    f=$(qdir "$1")/prefs
    awk -F '\t' -v k="$2" '$1 != k' "$f" >"$f.new"
    printf '%s\t%s\n' "$2" "$3" >>"$f.new"
    sort "$f.new" >"$f" && rm -f "$f.new"
}

# qubesadmin.tools.print_table: rows through `column -t`.
print_rows() { awk -F '\t' '{ printf "%-19s %s\n", $1, $2 }'; }
