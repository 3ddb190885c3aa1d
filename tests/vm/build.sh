#!/usr/bin/env bash
# tests/vm/build.sh - build the guest kernel + initramfs of the real-LVM test VM.
#
# Everything the guest runs comes from Debian .debs fetched with `apt-get download`
# (kernel, busybox-static, lvm2, dmsetup, thin-provisioning-tools, kmod, e2fsprogs,
# util-linux, bash, jq and the shared libraries they need). Nothing is installed on the
# host except qemu-system-x86 (and xz-utils if missing).
#
# Output (in ${SPARSEBAK_VM_CACHE:-/var/cache/sparsebak-vm}/out):
#   vmlinux          uncompressed kernel, booted by qemu through its PVH entry (fast)
#   vmlinuz          the Debian bzImage (fallback)
#   initramfs.cpio   uncompressed newc cpio: busybox + tools + modules + /init
#   manifest         kernel version and the .debs used
#   stamp            build key: the build is skipped when it is unchanged
#
# Usage: tests/vm/build.sh [--force]
# Env:   SPARSEBAK_VM_CACHE   cache dir (default /var/cache/sparsebak-vm)
#        SPARSEBAK_VM_KERNEL  kernel flavour meta package suffix (default amd64)
set -euo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
CACHE=${SPARSEBAK_VM_CACHE:-/var/cache/sparsebak-vm}
KFLAVOUR=${SPARSEBAK_VM_KERNEL:-amd64}
FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -e/{s/^# \{0,1\}//p}' "$SCRIPT"; exit 0 ;;
  *) echo "usage: $0 [--force]" >&2; exit 2 ;;
esac

# Bump when the layout of the output changes in a way the script hash would not catch.
FORMAT=1
# Packages whose files go into the initramfs. Their shared-library dependencies (lib*)
# are added automatically.
# jq: tests/json-lib.sh parses `sparsebak list --json` with it.
USER_PKGS=(busybox-static lvm2 dmsetup thin-provisioning-tools kmod e2fsprogs util-linux bash libc6 jq)
# Kernel modules loaded at boot (their dependencies are added from modules.dep).
MODULES=(virtio_pci virtio_blk dm-mod dm-thin-pool dm-snapshot dm-zero crc32c_generic
         9pnet_virtio 9p ext4 loop)
# Commands guest scripts may rely on; the build fails if one is missing from the image.
REQUIRED_CMDS=(sh bash busybox lvm pvcreate vgcreate vgremove lvcreate lvchange lvremove lvs vgs pvs
  dmsetup thin_delta thin_dump thin_ls thin_check thin_trim modprobe
  sha256sum md5sum dd blkdiscard fstrim blockdev mkfs.ext4 e2fsck mount umount sync timeout kill
  sleep head tail cmp tee awk sed grep cut tr od xxd hexdump truncate stat seq sort uniq wc
  find xargs mktemp setsid losetup poweroff jq)

T_START=$(date +%s.%N)
log() { printf '[vm-build] %s\n' "$*" >&2; }
die() { printf '[vm-build] ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

[ "$(uname -m)" = x86_64 ] || die "only x86_64 hosts are supported (got $(uname -m))"
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  die "this script needs a Debian host (apt-get, dpkg-deb)"
fi

APT_UPDATED=0
apt_update() {
  [ "$APT_UPDATED" = 1 ] && return 0
  log "apt-get update"
  local out
  out=$(apt-get update -qq 2>&1) || { printf '%s\n' "$out" >&2; die "apt-get update failed"; }
  APT_UPDATED=1
}

# Install host packages (by package name) when one of the given commands is missing.
ensure_host_cmd() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "$cmd is missing; install $pkg (needs root)"
  log "installing $pkg (for $cmd)"
  apt_update
  local out
  out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" 2>&1) \
    || { printf '%s\n' "$out" >&2; die "apt-get install $pkg failed"; }
  command -v "$cmd" >/dev/null || die "$cmd still missing after installing $pkg"
}

ensure_host_cmd qemu-system-x86_64 qemu-system-x86
ensure_host_cmd xz xz-utils
ensure_host_cmd flock util-linux

mkdir -p "$CACHE/debs" || die "cannot create cache dir $CACHE (set SPARSEBAK_VM_CACHE)"
exec 9>"$CACHE/.lock"
flock 9 || die "cannot lock $CACHE/.lock"
# Debian's docker images turn apt's binary package cache off, which makes every
# apt-cache call re-parse all lists (~1.5 s). Keep one in our cache dir instead.
APT_OPTS=(-o "Dir::Cache::pkgcache=$CACHE/apt-pkgcache.bin" -o "Dir::Cache::srcpkgcache=$CACHE/apt-srcpkgcache.bin")

# ---------------------------------------------------------------- resolve packages
# The apt lists may be missing (fresh machine) or stale: update once when needed.
if ! apt-cache "${APT_OPTS[@]}" show "linux-image-$KFLAVOUR" >/dev/null 2>&1; then
  apt_update
fi

APT_DEPENDS_OPTS=(--no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances)

resolve_packages() {
  KPKG=$(apt-cache "${APT_OPTS[@]}" depends "linux-image-$KFLAVOUR" 2>/dev/null \
         | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
  [ -n "$KPKG" ] || return 1
  KVER=${KPKG#linux-image-}
  # shared-library closure of USER_PKGS: follow (Pre)Depends on lib* packages only
  local -A seen=()
  local queue=("${USER_PKGS[@]}") next name p
  for p in "${queue[@]}"; do seen[$p]=1; done
  while [ "${#queue[@]}" -gt 0 ]; do
    next=()
    while read -r name; do
      [ -n "${seen[$name]:-}" ] && continue
      seen[$name]=1
      next+=("$name")
    done < <(apt-cache "${APT_OPTS[@]}" depends "${APT_DEPENDS_OPTS[@]}" "${queue[@]}" 2>/dev/null \
             | awk '$1 ~ /^[|]?(Pre)?Depends:$/ && $2 !~ /^</ {sub(/:.*/, "", $2); print $2}' \
             | grep '^lib' | sort -u)
    queue=("${next[@]}")
  done
  mapfile -t ALL_PKGS < <(printf '%s\n' "${!seen[@]}" | LC_ALL=C sort)
  ALL_PKGS=("$KPKG" "${ALL_PKGS[@]}")
  # exact file names (pkg_version_arch.deb), sizes and checksums from the apt lists
  URIS=$(apt-get "${APT_OPTS[@]}" download --print-uris "${ALL_PKGS[@]}" 2>/dev/null) || return 1
  [ "$(printf '%s\n' "$URIS" | grep -c .)" = "${#ALL_PKGS[@]}" ] || return 1
}

if ! resolve_packages; then
  apt_update
  resolve_packages || die "cannot resolve the packages (${USER_PKGS[*]} linux-image-$KFLAVOUR)"
fi

DEB_FILES=()
while read -r _uri file size _hash; do
  DEB_FILES+=("$file:$size")
done <<<"$URIS"

KEY=$( { echo "format=$FORMAT"; sha256sum <"$SCRIPT"; printf '%s\n' "${DEB_FILES[@]}" | LC_ALL=C sort; } \
       | sha256sum | cut -d' ' -f1)
OUT=$CACHE/out
if [ "$FORCE" = 0 ] && [ -s "$OUT/initramfs.cpio" ] && [ -s "$OUT/vmlinuz" ] \
   && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$KEY" ]; then
  log "up to date: kernel $KVER, $(( $(stat -c %s "$OUT/initramfs.cpio") / 1024 )) KiB initramfs in $OUT ($(elapsed) s)"
  exit 0
fi

# ---------------------------------------------------------------- download .debs
download_missing() {
  local missing=() entry file size name
  for entry in "${DEB_FILES[@]}"; do
    file=${entry%:*}; size=${entry##*:}
    if [ -f "$CACHE/debs/$file" ] && [ "$(stat -c %s "$CACHE/debs/$file")" = "$size" ]; then
      continue
    fi
    name=${file%%_*}
    missing+=("$name")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "downloading ${#missing[@]} package(s): ${missing[*]}"
  rm -rf "$CACHE/debs/partial"
  mkdir -p "$CACHE/debs/partial"
  ( cd "$CACHE/debs/partial" && apt-get "${APT_OPTS[@]}" download -qq -o APT::Sandbox::User=root "${missing[@]}" >&2 ) \
    || return 1
  mv -f "$CACHE/debs/partial/"*.deb "$CACHE/debs/"
  rm -rf "$CACHE/debs/partial"
}
if ! download_missing; then
  log "download failed; refreshing the apt lists and retrying"
  apt_update
  resolve_packages || die "cannot resolve packages after apt-get update"
  DEB_FILES=()
  while read -r _uri file size _hash; do DEB_FILES+=("$file:$size"); done <<<"$URIS"
  KEY=$( { echo "format=$FORMAT"; sha256sum <"$SCRIPT"; printf '%s\n' "${DEB_FILES[@]}" | LC_ALL=C sort; } \
         | sha256sum | cut -d' ' -f1)
  download_missing || die "apt-get download failed"
fi

# ---------------------------------------------------------------- unpack
W=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$W"' EXIT
STAGE=$W/stage KERN=$W/kern ROOT=$W/root
mkdir -p "$STAGE" "$KERN" "$ROOT"
log "unpacking ${#DEB_FILES[@]} packages (kernel $KVER)"
for entry in "${DEB_FILES[@]}"; do
  file=${entry%:*}
  case $file in
    "${KPKG}"_*) dpkg-deb -x "$CACHE/debs/$file" "$KERN" ;;
    *) dpkg-deb -x "$CACHE/debs/$file" "$STAGE" ;;
  esac
done

LIBDIR=lib/x86_64-linux-gnu
LDSO=$STAGE/$LIBDIR/ld-linux-x86-64.so.2
[ -x "$LDSO" ] || die "no dynamic loader in the staged libc6"
STAGE_LIBPATH=$STAGE/$LIBDIR:$STAGE/usr/$LIBDIR
# run a staged (dynamically linked) binary on the host with the staged libraries
stage_run() { "$LDSO" --library-path "$STAGE_LIBPATH" "$@"; }
KMOD=$STAGE/bin/kmod
[ -x "$KMOD" ] || die "kmod binary not found in the kmod package"

# ---------------------------------------------------------------- kernel + modules
MD=$KERN/lib/modules/$KVER
[ -d "$MD" ] || die "kernel package has no lib/modules/$KVER"
stage_run --argv0 depmod "$KMOD" -b "$KERN" "$KVER"   # the .deb ships no modules.dep
mods=()
for m in "${MODULES[@]}"; do
  m_re=$(printf '%s' "$m" | sed 's/[-_]/[-_]/g')
  line=$(grep -E "(^|/)${m_re}\.ko(\.[a-z]+)?:" "$MD/modules.dep" || true)
  if [ -z "$line" ]; then
    if grep -qE "(^|/)${m_re}\.ko" "$MD/modules.builtin"; then
      log "module $m is built into the kernel"
      continue
    fi
    die "kernel module $m not found in $KPKG"
  fi
  read -r -a deps <<<"${line#*:}"
  mods+=("${line%%:*}" "${deps[@]}")
done
RMD=$ROOT/lib/modules/$KVER
mkdir -p "$RMD"
for m in $(printf '%s\n' "${mods[@]}" | sort -u); do
  install -D -m644 "$MD/$m" "$RMD/$m"
done
cp "$MD"/modules.order "$MD"/modules.builtin "$MD"/modules.builtin.modinfo "$RMD/"
stage_run --argv0 depmod "$KMOD" -b "$ROOT" "$KVER"

OUTN=$CACHE/out.new
rm -rf "$OUTN"
mkdir -p "$OUTN"
cp "$KERN/boot/vmlinuz-$KVER" "$OUTN/vmlinuz"
# Uncompressed ELF vmlinux: qemu enters it through the PVH note, which skips the
# in-guest decompressor (~2-3 s under TCG). Fallback: the bzImage.
xz_off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$OUTN/vmlinuz" | head -n1 | cut -d: -f1 || true)
if [ -n "$xz_off" ] \
   && tail -c +"$((xz_off + 1))" "$OUTN/vmlinuz" >"$W/vmlinux.xz" \
   && xz -dc --single-stream <"$W/vmlinux.xz" >"$OUTN/vmlinux" 2>/dev/null \
   && [ "$(head -c4 "$OUTN/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] \
   && grep -q '^CONFIG_PVH=y' "$KERN/boot/config-$KVER"; then
  log "extracted uncompressed vmlinux ($(( $(stat -c %s "$OUTN/vmlinux") / 1048576 )) MiB)"
else
  log "warning: could not extract a PVH vmlinux; run.sh will boot the bzImage"
  rm -f "$OUTN/vmlinux"
fi
rm -rf "$KERN"

# ---------------------------------------------------------------- userland
mkdir -p "$ROOT"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,"$LIBDIR",lib64,etc/lvm,proc,sys,dev,run,tmp,mnt,share,vm,root,var/lock}
ln -s ../run "$ROOT/var/run"

# copy a staged path (file or symlink, keeping symlinks) into the root
put() {
  local rel=$1
  [ -e "$STAGE/$rel" ] || [ -L "$STAGE/$rel" ] || return 1
  mkdir -p "$ROOT/$(dirname "$rel")"
  cp -a "$STAGE/$rel" "$ROOT/$rel"
}
# find a command in the staged bin dirs, print its relative path
find_cmd() {
  local d
  for d in sbin bin usr/sbin usr/bin; do
    if [ -e "$STAGE/$d/$1" ] || [ -L "$STAGE/$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  return 1
}
# commands that must come from the packages (not busybox)
for c in bash lvm dmsetup dmstats pdata_tools kmod mke2fs mkfs.ext2 mkfs.ext3 mkfs.ext4 \
         e2fsck fsck.ext4 tune2fs dumpe2fs resize2fs debugfs blkdiscard fstrim blockdev wipefs \
         blkid lsblk findmnt fallocate flock jq; do
  rel=$(find_cmd "$c") || die "command $c not found in the packages"
  put "$rel"
done
# multi-call binaries: every staged symlink pointing at lvm, pdata_tools or kmod
while read -r l; do
  case $(readlink "$l") in
    lvm|pdata_tools|kmod|/bin/kmod) put "${l#"$STAGE"/}" ;;
  esac
done < <(find "$STAGE/bin" "$STAGE/sbin" "$STAGE/usr/bin" "$STAGE/usr/sbin" -maxdepth 1 -type l)
cp "$STAGE/etc/mke2fs.conf" "$ROOT/etc/"
cp "$STAGE/bin/busybox" "$ROOT/bin/busybox"
# busybox applets for everything the packages did not provide
for a in $("$ROOT/bin/busybox" --list); do
  case $a in linuxrc|init) continue ;; esac
  for d in bin sbin usr/bin usr/sbin; do
    if [ -e "$ROOT/$d/$a" ] || [ -L "$ROOT/$d/$a" ]; then continue 2; fi
  done
  ln -s busybox "$ROOT/bin/$a"
done

# shared libraries: resolve with the staged loader against the staged libraries only
libs_tmp=$W/libs.txt
: >"$libs_tmp"
# true if $1 is an ELF file with a PT_INTERP program header (dynamically linked)
is_dynamic_elf() {
  local f=$1 phoff phentsize phnum i type
  [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || return 1
  phoff=$(od -An -t u8 -j 32 -N 8 "$f" | tr -d ' ')
  phentsize=$(od -An -t u2 -j 54 -N 2 "$f" | tr -d ' ')
  phnum=$(od -An -t u2 -j 56 -N 2 "$f" | tr -d ' ')
  for ((i = 0; i < phnum; i++)); do
    type=$(od -An -t u4 -j $((phoff + i * phentsize)) -N 4 "$f" | tr -d ' ')
    [ "$type" = 3 ] && return 0
  done
  return 1
}
while read -r f; do
  is_dynamic_elf "$f" || continue
  out=$(stage_run --list "$f" 2>&1) || die "cannot list the libraries of ${f#"$ROOT"}: $out"
  if printf '%s\n' "$out" | grep -q 'not found'; then
    die "${f#"$ROOT"}: unresolved libraries: $(printf '%s\n' "$out" | grep 'not found' | tr -s ' \t' ' ')"
  fi
  printf '%s\n' "$out" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' >>"$libs_tmp"
done < <(find "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" -type f)
sort -u "$libs_tmp" | while read -r soname path; do
  case $path in
    "$STAGE"/*) ;;
    *) echo "[vm-build] warning: $soname resolved on the host ($path), not in the packages" >&2 ;;
  esac
  install -m755 "$(readlink -f "$path")" "$ROOT/$LIBDIR/${soname##*/}"
done
install -m755 "$(readlink -f "$LDSO")" "$ROOT/$LIBDIR/ld-linux-x86-64.so.2"
ln -sf "../$LIBDIR/ld-linux-x86-64.so.2" "$ROOT/lib64/ld-linux-x86-64.so.2"

# ---------------------------------------------------------------- configuration
# No udev in the guest: LVM and libdevmapper create the /dev nodes themselves.
cat >"$ROOT/etc/lvm/lvm.conf" <<'EOF'
# sparsebak test VM: no udev, no daemons
devices {
    obtain_device_list_from_udev = 0
    external_device_info_source = "none"
    use_devicesfile = 0
    scan = [ "/dev" ]
    md_component_detection = 0
    multipath_component_detection = 0
    fw_raid_component_detection = 0
}
activation {
    udev_sync = 0
    udev_rules = 0
    verify_udev_operations = 0
    monitoring = 0
}
global {
    use_lvmlockd = 0
    use_lvmpolld = 0
    thin_check_executable = "/usr/sbin/thin_check"
    thin_dump_executable = "/usr/sbin/thin_dump"
    thin_repair_executable = "/usr/sbin/thin_repair"
}
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\ndisk:x:6:\n' >"$ROOT/etc/group"
printf 'sparsebak-vm\n' >"$ROOT/etc/hostname"
: >"$ROOT/etc/fstab"

MODLIST=$(printf '%s ' "${MODULES[@]}")
cat >"$ROOT/init" <<EOF
#!/bin/sh
# sparsebak test VM init (generated by tests/vm/build.sh). Runs /share/test.sh,
# writes its log to /vm/guest.log and its exit status to /vm/status, powers off.
MODULES="$MODLIST"
KVER="$KVER"
EOF
cat >>"$ROOT/init" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LVM_SUPPRESS_FD_WARNINGS=1 LANG=C LC_ALL=C
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[vm-init $(up)s] $*"; }
halt_now() { sync; poweroff -f; echo o >/proc/sysrq-trigger; sleep 5; }
fail() { say "FATAL: $*"; halt_now; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lvm /run/lock/lvm /dev/mapper
hostname sparsebak-vm
# shellcheck disable=SC2086
modprobe -a $MODULES || fail "modprobe failed"

OPTS=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$OPTS" vmctl /vm || fail "cannot mount the control share"
mount -t 9p -o "$OPTS" share /share || fail "cannot mount SHARE_DIR at /share"
# shellcheck disable=SC1091
[ -f /vm/env ] && . /vm/env

# wait for the expected disks (virtio_blk probes synchronously; this is a safety net)
ndisks() { set -- /sys/block/vd*; [ -e "$1" ] && echo $# || echo 0; }
n=0
while [ "$(ndisks)" -lt "${VM_NDISKS:-0}" ] && [ $n -lt 50 ]; do
  sleep 0.1; n=$((n + 1))
done
VM_DISKS=""
for d in /sys/block/vd*; do [ -e "$d" ] && VM_DISKS="$VM_DISKS /dev/${d##*/}"; done
export VM_DISKS="${VM_DISKS# }" VM_LIB=/vm/guest-lib.sh SHARE=/share
export PATH="/share/bin:$PATH"

if [ -f /share/test.sh ]; then
  # test output -> fifo -> tee -> /vm/guest.log (on the host) + console
  mkfifo /tmp/out
  tee /vm/guest.log </tmp/out &
  teepid=$!
  exec 3>/tmp/out
  say "kernel $KVER, $(nproc) CPU(s), $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) MiB, disks: ${VM_DISKS:-none}" >&3
  say "running /share/test.sh" >&3
  cd /share || fail "cannot cd /share"
  if [ -x /share/test.sh ]; then
    /share/test.sh </dev/null >&3 2>&1 3>&-
  else
    sh /share/test.sh </dev/null >&3 2>&1 3>&-
  fi
  rc=$?
  cd / || true
  say "test.sh exited with status $rc" >&3
  exec 3>&-
  # tee ends when every writer is gone; leftover background processes keep the fifo open
  n=0
  while kill -0 "$teepid" 2>/dev/null && [ $n -lt 15 ]; do sleep 0.1; n=$((n + 1)); done
  if kill -0 "$teepid" 2>/dev/null; then
    kill -KILL -1 2>/dev/null
    say "killed processes left running by test.sh" | tee -a /vm/guest.log
  fi
  wait "$teepid" 2>/dev/null
else
  say "no /share/test.sh" | tee /vm/guest.log
  rc=127
fi
echo "$rc" >/vm/status.tmp && mv /vm/status.tmp /vm/status
if grep -q 'sparsebak.shell' /proc/cmdline; then
  say "debug shell (exit to power off)"
  setsid cttyhack sh
fi
halt_now
EOF
chmod 755 "$ROOT/init"

# every command guest scripts may rely on must resolve inside the image
# (symlinks are followed relative to the image root, not the host's)
in_root_exists() {
  local p=$1 t n=0
  while [ -L "$ROOT$p" ] && [ $n -lt 10 ]; do
    t=$(readlink "$ROOT$p")
    case $t in /*) p=$t ;; *) p=$(dirname "$p")/$t ;; esac
    n=$((n + 1))
  done
  [ -f "$ROOT$p" ] && [ -x "$ROOT$p" ]
}
for c in "${REQUIRED_CMDS[@]}"; do
  found=0
  for d in /usr/sbin /usr/bin /sbin /bin; do
    if in_root_exists "$d/$c"; then found=1; break; fi
  done
  [ "$found" = 1 ] || die "command $c missing from the guest image"
done

# ---------------------------------------------------------------- pack
# uncompressed cpio: under TCG it boots faster than a gzip one
( cd "$ROOT" && find . | LC_ALL=C sort | "$ROOT/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null ) \
  >"$OUTN/initramfs.cpio"
{
  echo "kernel $KVER"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${DEB_FILES[@]%:*}" | LC_ALL=C sort
} >"$OUTN/manifest"
echo "$KEY" >"$OUTN/stamp"
sha256sum <"$SCRIPT" | cut -d' ' -f1 >"$OUTN/build.sh.sha256"   # checked by run.sh
rm -rf "$OUT.old"
[ -d "$OUT" ] && mv "$OUT" "$OUT.old"
mv "$OUTN" "$OUT"
rm -rf "$OUT.old"

# drop .debs that are no longer used
keep=$(printf '%s\n' "${DEB_FILES[@]%:*}")
for f in "$CACHE"/debs/*.deb; do
  [ -e "$f" ] || continue
  grep -qxF "${f##*/}" <<<"$keep" || { log "removing old ${f##*/}"; rm -f "$f"; }
done

log "built kernel $KVER + initramfs ($(( $(stat -c %s "$OUT/initramfs.cpio") / 1024 )) KiB) in $OUT ($(elapsed) s)"
