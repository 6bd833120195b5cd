#!/bin/sh
# Stage 1, /init of the VM's initramfs (busybox sh). Builds the guest's root: the host's root
# read-only over 9p as the lower layer of an overlay whose upper layer is a tmpfs, so the guest
# may write anywhere and nothing it writes reaches the host. Then hands over, as PID 1, to
# stage 2 (scripts/vm/guest.sh, read from the host's tree through that root).
#
# The kernel command line carries frazil_vm_guest=<path of guest.sh on the host>.
export PATH=/bin
/bin/busybox --install -s /bin

mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
# The kernel found no /dev/console in this initramfs (it is built without device nodes).
exec </dev/console >/dev/console 2>&1

fail() {
    echo "frazil-vm stage 1: $*"
    echo 1 > /proc/sys/kernel/sysrq
    echo o > /proc/sysrq-trigger
    sleep 60
}

for m in virtio_pci 9pnet_virtio 9p overlay virtio_blk crc32c_generic ext4; do
    modprobe "$m" || fail "cannot load module $m"
done

guest=
for arg in $(cat /proc/cmdline); do
    case $arg in frazil_vm_guest=*) guest=${arg#*=};; esac
done
[ -n "$guest" ] || fail "no frazil_vm_guest= on the kernel command line"

# cache=loose: the share is read-only and its files do not change under a short-lived VM, so
# the guest may cache them; that is most of the speed of 9p.
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=262144 hostroot /lower \
    || fail "cannot mount the host's root (9p tag hostroot)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work root /newroot \
    || fail "cannot mount the overlay"
# The runner's exchange dir (the command in, its exit status out): writable, and the only path
# by which the guest reaches the host.
mkdir -p /newroot/frazil-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /newroot/frazil-vm || fail "cannot mount the out share"

for d in dev proc sys; do
    mount --move /$d /newroot/$d
done
exec switch_root /newroot /bin/bash "$guest"
