#!/usr/bin/env bash
# Build the two RPM packages with real rpmbuild (rpm/build.sh) and inspect
# them: exact file lists and modes, the config file, the static agent inside
# (no program interpreter, no NEEDED libraries, no library requirements), the
# service and policy files identical to the repository's, the man page, and
# the packaged binaries doing a real send and receive.
#   tests/suite-rpm.sh        (KEEP_T=1 keeps the temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=tests/check-lib.sh
. tests/check-lib.sh

need=()
command -v rpmbuild >/dev/null || need+=(rpm)
command -v rpm2cpio >/dev/null || need+=(rpm2cpio)
command -v cpio >/dev/null || need+=(cpio)
command -v readelf >/dev/null || need+=(binutils)
if [ "${#need[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || fail "missing ${need[*]}; install them (needs root)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-rpmtest.XXXXXX")
trap 'if [ "${KEEP_T:-0}" = 1 ]; then echo "kept $T" >&2; else rm -rf "$T"; fi' EXIT

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
rpm/build.sh "$T/out" >"$T/built"
DOM0=$T/out/sparsebak-$VERSION-1.x86_64.rpm
VMPKG=$T/out/sparsebak-agent-$VERSION-1.x86_64.rpm
[ "$(sort "$T/built")" = "$(printf '%s\n' "$DOM0" "$VMPKG" | sort)" ] ||
    { cat "$T/built"; fail "rpm/build.sh did not report exactly the two packages"; }
ok "built $(basename "$DOM0") and $(basename "$VMPKG")"

# files PKG: "MODE PATH" for every file in the package.
files() { rpm -qp --qf '[%{FILEMODES:perms} %{FILENAMES}\n]' "$1" 2>/dev/null | sort -k2; }
header() { rpm -qp --qf '%{NAME} %{VERSION} %{ARCH}' "$1" 2>/dev/null; }

[ "$(header "$DOM0")" = "sparsebak $VERSION x86_64" ] || fail "dom0 package header: $(header "$DOM0")"
[ "$(header "$VMPKG")" = "sparsebak-agent $VERSION x86_64" ] || fail "VM package header: $(header "$VMPKG")"

files "$DOM0" >"$T/dom0.files"
sort -k2 >"$T/dom0.expected" <<'LIST'
-rw-r--r-- /etc/qubes/policy.d/50-sparsebak.policy
-rwxr-xr-x /etc/qubes-rpc/sparsebak.Restore
-r--r----- /etc/sudoers.d/sparsebak-restore
-rwxr-xr-x /usr/bin/sparsebak
drwxr-xr-x /usr/libexec/sparsebak
-rwxr-xr-x /usr/libexec/sparsebak/sparsebak-send-now
-rw-r--r-- /usr/lib/systemd/system-preset/80-sparsebak.preset
-rw-r--r-- /usr/lib/systemd/system/sparsebak-monitor.service
-rw-r--r-- /usr/lib/systemd/system/sparsebak-monitor.timer
-rw-r--r-- /usr/lib/systemd/system/sparsebak-send.service
-rw-r--r-- /usr/lib/systemd/system/sparsebak-send.timer
-rw-r--r-- /usr/share/applications/sparsebak-send.desktop
-rw-r--r-- /usr/share/bash-completion/completions/sparsebak
drwxr-xr-x /usr/share/doc/sparsebak
-rw-r--r-- /usr/share/doc/sparsebak/ARCHITECTURE.md
-rw-r--r-- /usr/share/doc/sparsebak/DESTINATIONS.md
-rw-r--r-- /usr/share/doc/sparsebak/FORMAT.md
-rw-r--r-- /usr/share/doc/sparsebak/README.md
drwxr-xr-x /usr/share/doc/sparsebak/r4.0
-rw-r--r-- /usr/share/doc/sparsebak/r4.0/qubes.SparsebakStore
-rw-r--r-- /usr/share/fish/vendor_completions.d/sparsebak.fish
-rw-r--r-- /usr/share/man/man1/sparsebak.1.gz
-rw-r--r-- /usr/share/zsh/site-functions/_sparsebak
drwx------ /var/lib/sparsebak
LIST
diff "$T/dom0.expected" "$T/dom0.files" || fail "dom0 package: unexpected file list or modes"
ok "dom0 package file list and modes"
[ "$(rpm -qcp "$DOM0" 2>/dev/null | sort)" = "$(printf '%s\n' /etc/qubes/policy.d/50-sparsebak.policy /etc/sudoers.d/sparsebak-restore)" ] ||
    fail "the config files are not exactly the policy and the sudoers rule"
ok "the policy and the sudoers rule are config files"

files "$VMPKG" >"$T/vm.files"
cat >"$T/vm.expected" <<'LIST'
-rwxr-xr-x /etc/qubes-rpc/qubes.SparsebakStore
-rwxr-xr-x /usr/bin/sparsebak-agent
drwxr-xr-x /usr/share/doc/sparsebak-agent
-rw-r--r-- /usr/share/doc/sparsebak-agent/DESTINATIONS.md
LIST
diff "$T/vm.expected" "$T/vm.files" || fail "VM package: unexpected file list or modes"
ok "VM package file list and modes (the service is executable)"
if rpm -qRp "$VMPKG" 2>/dev/null | grep -E '\.so|GLIBC'; then
    fail "the VM package requires shared libraries"
fi
ok "the VM package requires no shared libraries"

mkdir -p "$T/root"
for p in "$DOM0" "$VMPKG"; do
    (cd "$T/root" && rpm2cpio "$p" | cpio -idm --quiet)
done
A=$T/root/usr/bin/sparsebak-agent
[ -x "$A" ] || fail "no agent in the VM package payload"
if readelf -lW "$A" | grep -q INTERP; then fail "the packaged agent has a program interpreter"; fi
if readelf -dW "$A" | grep -q '(NEEDED)'; then fail "the packaged agent needs shared libraries"; fi
[ "$("$A" --version)" = "sparsebak-agent $VERSION" ] || fail "the packaged agent does not run"
ok "the packaged agent is static (no INTERP, no NEEDED) and runs"
D=$T/root/usr/bin/sparsebak
if readelf -lW "$D" | grep -q INTERP; then fail "the packaged sparsebak has a program interpreter"; fi
if readelf -dW "$D" | grep -q '(NEEDED)'; then fail "the packaged sparsebak needs shared libraries"; fi
[ "$(env -i "$D" version)" = "sparsebak $VERSION" ] || fail "the packaged sparsebak does not run"
ok "the packaged sparsebak is static (runs on any dom0 glibc) and runs"
if rpm -qRp "$DOM0" 2>/dev/null | grep -E '\.so|GLIBC'; then
    fail "the dom0 package requires shared libraries"
fi
ok "the dom0 package requires no shared libraries"

# Qubes R4.2 dom0 is Fedora 37 (glibc 2.36), R4.3 Fedora 41 (glibc 2.40):
# the packaged binary may not need a newer glibc than 2.36. A static binary
# needs none at all. The probe is checked on a dynamic binary first, so an
# empty answer means "no requirement", not "the probe is broken".
glibc_needed() { { readelf -W --version-info "$1" | grep -o 'GLIBC_[0-9][0-9.]*' || true; } | sed 's/^GLIBC_//' | sort -uV | tail -n 1; }
DYN=${CARGO_TARGET_DIR:-target}/debug/sparsebak
if [ -x "$DYN" ] && readelf -lW "$DYN" | grep -q INTERP; then
    [ -n "$(glibc_needed "$DYN")" ] || fail "the glibc probe finds nothing in the dynamic $DYN"
fi
for b in "$D" "$A"; do
    need=$(glibc_needed "$b")
    if [ -n "$need" ] && [ "$(printf '%s\n2.36\n' "$need" | sort -V | tail -n 1)" != 2.36 ]; then
        fail "$b needs glibc $need; Qubes R4.2 dom0 (Fedora 37) has 2.36"
    fi
    [ -z "$need" ] || fail "$b needs glibc $need: the package promises a static binary"
done
ok "the packaged binaries need no glibc version (static): they run on Qubes R4.2 and R4.3 dom0"

cmp "$T/root/etc/qubes-rpc/qubes.SparsebakStore" qubes-rpc/qubes.SparsebakStore || fail "packaged service differs"
cmp "$T/root/etc/qubes/policy.d/50-sparsebak.policy" policy/50-sparsebak.policy || fail "packaged policy differs"
cmp "$T/root/usr/share/doc/sparsebak/r4.0/qubes.SparsebakStore" policy/r4.0/qubes.SparsebakStore ||
    fail "packaged R4.0 policy differs"
cmp "$T/root/etc/qubes-rpc/sparsebak.Restore" qubes-rpc/sparsebak.Restore || fail "packaged restore service differs"
cmp "$T/root/etc/sudoers.d/sparsebak-restore" rpm/sparsebak-restore.sudoers || fail "packaged sudoers rule differs"
if command -v visudo >/dev/null; then
    visudo -c -q -f "$T/root/etc/sudoers.d/sparsebak-restore" || fail "visudo -c rejects the packaged sudoers rule"
fi
ok "services, policies and the sudoers rule (visudo -c) are the repository's"

for f in sparsebak-monitor.service sparsebak-monitor.timer sparsebak-send.service sparsebak-send.timer; do
    cmp "$T/root/usr/lib/systemd/system/$f" "systemd/$f" || fail "packaged $f differs"
done
cmp "$T/root/usr/lib/systemd/system-preset/80-sparsebak.preset" systemd/80-sparsebak.preset || fail "packaged preset differs"
cmp "$T/root/usr/share/applications/sparsebak-send.desktop" desktop/sparsebak-send.desktop || fail "packaged desktop entry differs"
cmp "$T/root/usr/libexec/sparsebak/sparsebak-send-now" desktop/sparsebak-send-now || fail "packaged send-now script differs"
[ "$(grep -v '^#' systemd/80-sparsebak.preset | grep .)" = "$(printf 'disable sparsebak-monitor.timer\ndisable sparsebak-send.timer')" ] ||
    fail "the preset does not ship both timers disabled"
ok "units, preset (timers disabled), menu entry and its script are the repository's"

# Every rule is "SERVICE * SOURCE TARGET deny", covering VM-to-VM and
# VM-to-dom0 calls of both services; nothing is allowed.
rules=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' policy/50-sparsebak.policy)
[ -z "$(printf '%s\n' "$rules" | awk 'NF != 5 || $2 != "*" || $5 != "deny"')" ] ||
    fail "a policy rule is not a deny"
[ "$(printf '%s\n' "$rules" | awk '{print $1, $3, $4}' | sort)" = "$(printf '%s\n' 'qubes.SparsebakStore @anyvm @adminvm' \
    'qubes.SparsebakStore @anyvm @anyvm' 'sparsebak.Restore @anyvm @adminvm' 'sparsebak.Restore @anyvm @anyvm')" ] ||
    fail "the policy does not deny exactly @anyvm -> @anyvm and @anyvm -> @adminvm for both services"
grep -q '^##   sparsebak.Restore  *\*  *sys-backup  *@adminvm  *ask default_target=@adminvm$' policy/50-sparsebak.policy ||
    fail "the policy does not document the ask rule for the backup VM"
rules=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' policy/r4.0/qubes.SparsebakStore | awk '{print $1, $2, $3}')
[ "$rules" = "$(printf '%s\n' '$anyvm $anyvm deny' '$anyvm dom0 deny')" ] || fail "R4.0 policy rules: $rules"
ok "policy rules deny VM-to-VM and VM-to-dom0 calls"

gunzip -c "$T/root/usr/share/man/man1/sparsebak.1.gz" >"$T/sparsebak.1"
cmp "$T/sparsebak.1" docs/sparsebak.1 || fail "packaged man page differs"
grep -q '^\.TH SPARSEBAK 1' "$T/sparsebak.1" || fail "man page header"
if command -v groff >/dev/null; then
    warn=$(groff -man -ww -z "$T/sparsebak.1" 2>&1)
    [ -z "$warn" ] || fail "groff warns about the man page: $warn"
fi
ok "man page"

# The completions are the packaged binary's own, and know the commands'
# options.
for sh in bash zsh fish; do
    case $sh in
    bash) f=$T/root/usr/share/bash-completion/completions/sparsebak ;;
    zsh) f=$T/root/usr/share/zsh/site-functions/_sparsebak ;;
    fish) f=$T/root/usr/share/fish/vendor_completions.d/sparsebak.fish ;;
    esac
    "$T/root/usr/bin/sparsebak" completions "$sh" | cmp - "$f" || fail "$sh completion differs from the binary's"
    grep -q -- 'save-to' "$f" || fail "$sh completion lacks receive's --save-to"
done
if command -v bash >/dev/null; then
    bash -n "$T/root/usr/share/bash-completion/completions/sparsebak" || fail "bash completion has a syntax error"
fi
ok "shell completions (bash, zsh, fish)"

# The packaged binaries back up and restore (internal: destination).
MP=$(stat -c %m "$T")
mkdir -p "$T/img"
head -c 3145728 /dev/urandom >"$T/img/v"
export SPARSEBAK_META_DIR=$T/meta SPARSEBAK_AGENT=$A
SB=$T/root/usr/bin/sparsebak
"$SB" arch-init --dest="internal:$MP" --subdir="$(realpath -m --relative-to="$MP" "$T/arch")" \
    --source="dir:$T/img" --encrypt=off >/dev/null
"$SB" add v >/dev/null
"$SB" send -u >/dev/null
"$SB" receive v --save-to="$T/back" -u >/dev/null
cmp "$T/img/v" "$T/back" || fail "the packaged binaries restored different data"
ok "the packaged sparsebak and agent send and restore equal"

echo
echo "suite-rpm: all passed"
