#!/bin/bash
# Stage 2, PID 1 of the VM (bash from the host's root, seen through the guest's overlay). Mounts
# what a Linux system has, with cgroup v2 as the only hierarchy, sets up the layout the runner
# asked for, runs the command as root, leaves its exit status in /frazil-vm/rc and powers off.
#
# /frazil-vm/job (written by run.sh) sets LAYOUT, WORKDIR and the command's arguments ("$@").
# There is no init system: the command starts in the root cgroup.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8

power_off() {
    sync
    echo 1 > /proc/sys/kernel/sysrq
    # The power-off is asynchronous and PID 1 must not exit meanwhile (that is a panic). The
    # sleep starts first: once the power-off begins, the 9p root it comes from goes away.
    sleep 60 &
    echo o > /proc/sysrq-trigger
    wait
}

mount -t tmpfs -o mode=0755,nosuid,nodev run /run
# /tmp on the scratch disk run.sh attaches (ext4 on virtio, /dev/vda): the tests' data dirs
# live there, so the platform finds a real disk behind them and writes io.max for it.
mount -t ext4 -o nosuid,nodev /dev/vda /tmp && chmod 1777 /tmp \
    || { echo "frazil-vm: no scratch disk at /dev/vda: /tmp is memory"; mount -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp; }
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
ln -sfn /proc/self/fd /dev/fd
# nsdelegate, as systemd mounts it: a cgroup namespace is a delegation boundary, the way a
# container sees its cgroup.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
ip link set lo up
hostname frazil-vm
# The serial console would turn every \n into \r\n on its way to the host's terminal.
stty -F /dev/console -onlcr 2>/dev/null

# shellcheck source=/dev/null
. /frazil-vm/job
cd "$WORKDIR" || { echo 125 > /frazil-vm/rc; power_off; }

case $LAYOUT in
plain)
    # frazil at the root of the only hierarchy, as on a VM or a host without systemd.
    "$@"
    ;;
container)
    # As a container runtime sets one up (cgroupns=private): the container gets a cgroup of
    # its own with every controller delegated to it, its init moves there, and the command
    # runs in a cgroup namespace rooted at that cgroup with cgroup2 mounted again, so that
    # /sys/fs/cgroup is the container's cgroup, holding processes (this shell among them).
    read -r controllers < /sys/fs/cgroup/cgroup.controllers
    echo "+${controllers// / +}" > /sys/fs/cgroup/cgroup.subtree_control
    mkdir /sys/fs/cgroup/ctr
    echo $$ > /sys/fs/cgroup/ctr/cgroup.procs
    unshare --cgroup --mount --propagation private -- \
        bash -c 'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' container "$@"
    ;;
*)
    echo "frazil-vm: unknown layout $LAYOUT"
    false
    ;;
esac
echo $? > /frazil-vm/rc
power_off
