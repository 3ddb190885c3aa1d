#!/usr/bin/env bash
# Build the two RPM packages from this repository with real rpmbuild:
#   sparsebak        for dom0 (or any Linux admin host): the sparsebak
#                    command, the qrexec policy, docs, the man page;
#   sparsebak-agent  for backup VMs and ssh hosts: the statically linked
#                    agent and /etc/qubes-rpc/qubes.SparsebakStore.
#
#   rpm/build.sh [OUTDIR]      (default: $CARGO_TARGET_DIR or target/, then rpm/)
#
# cargo builds the binaries here; rpmbuild only packages them (the spec files
# take the staged files from %{sb_stage}), so no network or vendored crates
# are needed inside rpmbuild. On Debian, rpmbuild comes from the `rpm`
# package; it is installed when missing and we are root.
# Prints the paths of the two packages, one a line, last on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
OUT=${1:-$TARGET_DIR/rpm}
log() { printf 'rpm/build.sh: %s\n' "$*" >&2; }

if ! command -v rpmbuild >/dev/null; then
    [ "$(id -u)" = 0 ] || { log "rpmbuild is missing: install the rpm package"; exit 1; }
    log "installing rpmbuild (Debian package rpm)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rpm >/dev/null
fi
command -v readelf >/dev/null || { log "readelf is missing (binutils)"; exit 1; }

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$VERSION" ] || { log "no workspace version in Cargo.toml"; exit 1; }
RELEASE=${SPARSEBAK_RPM_RELEASE:-1}

# dom0 is built static too: Qubes R4.1 dom0 has glibc 2.31 and R4.2 2.34,
# so a binary linked dynamically against the build host's newer glibc would
# not start there. --target keeps RUSTFLAGS away from build scripts.
log "building sparsebak $VERSION (release, static)"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release -p sparsebak --bin sparsebak --target x86_64-unknown-linux-gnu >&2
SPARSEBAK=$TARGET_DIR/x86_64-unknown-linux-gnu/release/sparsebak

log "building the static agent"
if [ -x scripts/build-agent-static.sh ]; then
    AGENT=$(scripts/build-agent-static.sh | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
    case $AGENT in /*) ;; *) AGENT=$REPO/$AGENT ;; esac
else
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p sparsebak-agent --target x86_64-unknown-linux-gnu >&2
    AGENT=$TARGET_DIR/x86_64-unknown-linux-gnu/release/sparsebak-agent
fi
[ -x "$AGENT" ] || { log "no agent binary at $AGENT"; exit 1; }
# The packages promise static binaries: refuse to package anything else.
for b in "$AGENT" "$SPARSEBAK"; do
    if readelf -lW "$b" | grep -q 'INTERP' || readelf -dW "$b" | grep -q '(NEEDED)'; then
        log "$b is not statically linked"
        exit 1
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sparsebak-rpm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/stage
mkdir -p "$STAGE" "$WORK/rpmbuild"
install -m 0755 "$SPARSEBAK" "$STAGE/sparsebak"
install -m 0755 "$AGENT" "$STAGE/sparsebak-agent"
install -m 0755 qubes-rpc/qubes.SparsebakStore "$STAGE/qubes.SparsebakStore"
install -m 0644 policy/50-sparsebak.policy "$STAGE/50-sparsebak.policy"
install -m 0644 policy/r4.0/qubes.SparsebakStore "$STAGE/r4.0-qubes.SparsebakStore.policy"
install -m 0644 docs/sparsebak.1 "$STAGE/sparsebak.1"
for d in README.md docs/DESTINATIONS.md docs/FORMAT.md docs/ARCHITECTURE.md; do
    [ -e "$d" ] && install -m 0644 "$d" "$STAGE/$(basename "$d")"
done

mkdir -p "$OUT"
for spec in rpm/sparsebak.spec rpm/sparsebak-agent.spec; do
    log "rpmbuild $spec"
    rpmbuild -bb --quiet \
        --define "_topdir $WORK/rpmbuild" \
        --define "sb_version $VERSION" \
        --define "sb_release $RELEASE" \
        --define "sb_stage $STAGE" \
        "$spec" >&2
done
for f in "$WORK"/rpmbuild/RPMS/*/*.rpm; do
    cp "$f" "$OUT/"
    echo "$OUT/$(basename "$f")"
done
