#!/usr/bin/env bash
# Gets what the VM runner boots, idempotently: QEMU (installed with apt), and a Debian kernel and
# a static busybox (downloaded with apt and only unpacked into the cache, never installed on the
# host, whose own kernel and packages stay as they are). Builds the kernel image QEMU loads and
# a small initramfs from them. Prints the cache dir of the kernel it prepared on its last line.
#
#   bash scripts/vm/prepare.sh            (run.sh calls it; it does nothing when all is there)
#
# FRAZIL_VM_CACHE  where downloads and built images live (default /var/cache/frazil-vm)
# FRAZIL_VM_KERNEL the kernel package to boot (default: the one linux-image-amd64 depends on)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${FRAZIL_VM_CACHE:-/var/cache/frazil-vm}
# Modules the initramfs loads: the virtio PCI transport, 9p over it and overlayfs for a writable
# layer over the read-only share (the host's root); virtio_blk, ext4 and the crc32c it checks
# its metadata with for the scratch disk the guest's /tmp lives on (a real block device, so
# that disk bandwidth limits have a disk to apply to). Their dependencies come along.
MODULES=(virtio_pci 9pnet_virtio 9p overlay virtio_blk crc32c_generic ext4)

say() { echo "frazil-vm: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get installs QEMU, and the guest runs frazil as root)"

apt_install() {  # package...: install with apt unless already there
    local missing=()
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
    [ ${#missing[@]} = 0 ] && return 0
    say "installing ${missing[*]} (apt-get, without recommends)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
        || die "cannot install ${missing[*]} with apt-get (run apt-get update first; is a Debian mirror reachable?)"
}

# xz-utils: the compressed kernel inside the bzImage is xz (see vmlinux below).
apt_install qemu-system-x86 xz-utils
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not on PATH although qemu-system-x86 is installed"

if [ -z "${FRAZIL_VM_KERNEL:-}" ]; then
    FRAZIL_VM_KERNEL=$(apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: linux-image-\([0-9].*-amd64\)$/\1/p' | head -1)
    [ -n "$FRAZIL_VM_KERNEL" ] || die "cannot tell which kernel linux-image-amd64 stands for (apt-cache depends \
linux-image-amd64 names none: run apt-get update, or set FRAZIL_VM_KERNEL, e.g. 6.1.0-57-amd64)"
fi
KVER=$FRAZIL_VM_KERNEL
case $KVER in *-cloud-amd64) die "$KVER is a cloud kernel: it has no 9p, which the VM needs for the host's root";; esac
K=$CACHE/$KVER
mkdir -p "$CACHE/debs" "$K"
# Two runners started at once (two engineers) must not build the same files at the same time.
exec 9> "$CACHE/.lock"
flock 9

unpack() {  # package dir: download the .deb (once) and unpack it into dir (once)
    local pkg=$1 dir=$2
    [ -e "$dir/.unpacked" ] && return 0
    if ! ls "$CACHE/debs/${pkg}_"*.deb >/dev/null 2>&1; then
        say "downloading $pkg"
        (cd "$CACHE/debs" && apt-get download -q "$pkg" >&2) \
            || die "cannot download $pkg with apt-get download (run apt-get update first; is a Debian mirror reachable? \
FRAZIL_VM_KERNEL picks another kernel)"
    fi
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$(ls "$CACHE/debs/${pkg}_"*.deb | tail -1)" "$dir"
    touch "$dir/.unpacked"
}

unpack "linux-image-$KVER" "$K/pkg"
unpack busybox-static "$CACHE/busybox"
BB=$CACHE/busybox/bin/busybox
[ -x "$BB" ] || die "busybox-static unpacked without bin/busybox"
[ -e "$K/pkg/boot/vmlinuz-$KVER" ] || die "linux-image-$KVER has no boot/vmlinuz-$KVER"

# The .deb ships the modules without modules.dep (the package's postinst would run depmod).
if [ ! -e "$K/pkg/lib/modules/$KVER/modules.dep" ]; then
    "$BB" depmod -b "$K/pkg" "$KVER"
fi

# QEMU boots an uncompressed ELF kernel directly through its PVH entry point, with the small
# qboot firmware: seconds faster under emulation than the bzImage through a BIOS. The bzImage
# wraps the ELF in one xz stream: find its magic and decompress that stream alone.
if [ ! -s "$K/vmlinux" ]; then
    offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$K/pkg/boot/vmlinuz-$KVER" | head -1 | cut -d: -f1 || true)
    [ -n "$offset" ] || die "no xz stream in vmlinuz-$KVER (set FRAZIL_VM_BZIMAGE=1 to boot it through the BIOS)"
    # (xz stops reading at the end of its stream; what follows is not its business.)
    xz -dc --single-stream < <(tail -c +$((offset + 1)) "$K/pkg/boot/vmlinuz-$KVER") > "$K/vmlinux.tmp"
    [ "$(head -c 4 "$K/vmlinux.tmp" | tail -c 3)" = ELF ] || die "what vmlinuz-$KVER holds is no ELF kernel"
    mv "$K/vmlinux.tmp" "$K/vmlinux"
fi

# The initramfs: busybox, init.sh as /init, and the modules above with what they depend on.
# Rebuilt when init.sh or the module list changes (both are part of the stamp).
stamp=$( (cat "$HERE/init.sh"; echo "${MODULES[*]}") | sha256sum | cut -c1-16)
if [ "$(cat "$K/initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "building the initramfs for $KVER"
    root=$(mktemp -d "$K/initrd.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,dev,proc,sys,lower,rw,newroot,lib/modules/$KVER}
    cp "$BB" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    install -m 0755 "$HERE/init.sh" "$root/init"
    moddir=$K/pkg/lib/modules/$KVER
    # modules.dep lines read "kernel/x/a.ko: kernel/y/b.ko kernel/z/c.ko" (dependencies after the colon).
    wanted=$(for m in "${MODULES[@]}"; do
        line=$(grep -E "/${m//_/[_-]}\.ko(\.[a-z]+)?:" "$moddir/modules.dep") \
            || die "module $m is not in linux-image-$KVER (a cloud kernel? it has no 9p)"
        echo "$line" | tr -d ':' | tr ' ' '\n'
    done | sort -u)
    for f in $wanted; do
        mkdir -p "$root/lib/modules/$KVER/$(dirname "$f")"
        cp "$moddir/$f" "$root/lib/modules/$KVER/$f"
    done
    "$BB" depmod -b "$root" "$KVER"
    (cd "$root" && find . -mindepth 1 | "$BB" cpio -o -H newc 2>/dev/null) | gzip -1 > "$K/initrd.gz.tmp"
    mv "$K/initrd.gz.tmp" "$K/initrd.gz"
    echo "$stamp" > "$K/initrd.stamp"
fi

echo "$K"
