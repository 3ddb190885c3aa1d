#!/usr/bin/env bash
# Install what the test suites need on a fresh machine (Debian, as root).
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v losetup >/dev/null || need+=(mount)
command -v zstd >/dev/null || need+=(zstd)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)
# dom0/tests/it/dedup.rs: a real file system without hard links (exFAT over FUSE).
command -v mkfs.exfat >/dev/null || need+=(exfatprogs)
command -v mount.exfat-fuse >/dev/null || need+=(exfat-fuse)
# tests/suite-s3.sh: a real one-node Ceph with the RADOS Gateway
# (tests/ceph/start.sh); ~65 MiB, ~30 s to install. curl signs SigV4 there.
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph >/dev/null || need+=(ceph-common)
command -v uuidgen >/dev/null || need+=(uuid-runtime)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
# dom0/tests/it/reflink.rs: reflink sources on real Btrfs and XFS.
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
# tests/suite-qubes-ops.sh: the units, the menu entry and the sudoers rule
# are checked with the real tools.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v desktop-file-validate >/dev/null || need+=(desktop-file-utils)
command -v visudo >/dev/null || need+=(sudo)
# tests/suite-fuzz.sh: libfuzzer-sys compiles libFuzzer (C++).
command -v c++ >/dev/null || need+=(g++)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup-host: missing ${need[*]}; install them (needs root)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-gnu$' || true
echo "setup-host: ok"
