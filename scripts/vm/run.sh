#!/usr/bin/env bash
# Runs a command as root in a VM whose only cgroup hierarchy is v2, and exits with its status.
#
#   bash scripts/vm/run.sh [--layout plain|container] [--memory MB] [--cpus N] [--timeout S] -- CMD...
#
# The VM boots a Debian kernel under QEMU's software emulation (TCG: KVM on this kind of host
# cannot run a stock kernel) with `cgroup_no_v1=all`. Its root is the host's root, shared
# read-only over 9p under a tmpfs overlay: the guest sees this checkout, its venv and the host's
# interpreters, and nothing it writes reaches the host. CMD runs in the current directory; its
# output is streamed to this terminal (through the serial console).
#
# Layouts (see guest.sh): `plain`, frazil at the root of the hierarchy as on a VM or a host;
# `container`, CMD in its own cgroup namespace rooted at a non-root cgroup that holds processes,
# as in a container.
#
# Exit status: CMD's; 124 when the VM ran past --timeout; 125 when the VM stopped without
# reporting one (the console output says why). Everything runs `nice -n $FRAZIL_VM_NICE`
# (default 10): TCG keeps every CPU it is given busy. See scripts/vm/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
layout=plain memory=3072 cpus=$(nproc) timeout_s=3600

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --layout) layout=$2; shift 2;;
    --memory) memory=$2; shift 2;;
    --cpus) cpus=$2; shift 2;;
    --timeout) timeout_s=$2; shift 2;;
    --) shift; break;;
    -h|--help) usage;;
    *) echo "frazil-vm: unknown option $1" >&2; usage;;
    esac
done
[ $# -gt 0 ] || usage
case $layout in plain|container) ;; *) echo "frazil-vm: --layout is plain or container, not $layout" >&2; exit 2;; esac

K=$(bash "$HERE/prepare.sh" | tail -1)
KVER=$(basename "$K")

# The exchange dir, the guest's only writable way to the host: the job in, the exit status out.
work=$(mktemp -d /tmp/frazil-vm.XXXXXX)
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The scratch disk the guest's /tmp lives on: sparse, its contents thrown away with $work.
truncate -s "${FRAZIL_VM_SCRATCH_MB:-4096}M" "$work/scratch.img"
mkfs.ext4 -q -F -E nodiscard "$work/scratch.img"
{
    echo "LAYOUT=$layout"
    # Tests stretch their waits for a server's start by this factor (frazil.testing.server).
    printf 'export FRAZIL_VM_SLOWDOWN=%q\n' "${FRAZIL_VM_SLOWDOWN:-10}"
    printf 'WORKDIR=%q\n' "$PWD"
    printf 'set --'; printf ' %q' "$@"; echo
} > "$work/job"

if [ -n "${FRAZIL_VM_BZIMAGE:-}" ]; then
    boot=(-kernel "$K/pkg/boot/vmlinuz-$KVER")  # through SeaBIOS: slower, for a kernel without PVH
else
    boot=(-kernel "$K/vmlinux" -bios /usr/share/qemu/qboot.rom)
fi
# -cpu max: every feature TCG emulates (the seccomp and Landlock paths do not care, but the
# kernel boots faster with them). panic=-1 and -no-reboot: a guest that dies ends QEMU at once.
# readonly=on on the root share: the host's files cannot be written whatever the guest does.
# multidevs=remap: the host's root spans several filesystems; keeps their inode numbers apart.
cmdline="console=ttyS0 quiet loglevel=1 panic=-1 cgroup_no_v1=all frazil_vm_guest=$HERE/guest.sh"
start=$(date +%s.%N)
nice -n "${FRAZIL_VM_NICE:-10}" timeout --foreground -k 10 "$timeout_s" \
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$memory" \
    -nographic -no-reboot -nic none "${boot[@]}" \
    -initrd "$K/initrd.gz" -append "$cmdline" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=$work,mount_tag=out,security_model=none" \
    -drive "file=$work/scratch.img,if=virtio,format=raw,cache=unsafe" \
    < /dev/null &
qemu_pid=$!
set +e
wait "$qemu_pid"
vm_rc=$?
set -e
qemu_pid=
elapsed=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")

if [ "$vm_rc" = 124 ]; then
    echo "frazil-vm: the VM ran past --timeout ${timeout_s}s and was stopped" >&2
    exit 124
fi
if [ ! -s "$work/rc" ]; then
    echo "frazil-vm: the VM stopped (QEMU status $vm_rc) without reporting the command's exit status" >&2
    exit 125
fi
rc=$(cat "$work/rc")
echo "frazil-vm: layout $layout, kernel $KVER: exit status $rc after ${elapsed}s in the VM" >&2
exit "$rc"
