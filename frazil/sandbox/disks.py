"""Which whole disks hold what an instance can read: the devices its disk bandwidth limits
(blkio/io controller) are written for.

An instance reads from the host's disks only through the read-only binds of its root (/usr,
the interpreter's prefix, the runtimes), its code and its layers (the data dir); its /tmp is
memory. Each path maps to the mount holding it (/proc/self/mountinfo), the mount to its
device: the MAJ:MIN there when it is a block device (/sys/dev/block/MAJ:MIN), else the
mount's source when that is a block device node (btrfs and others report an anonymous
MAJ:MIN). A partition maps to its disk: the kernel throttles whole disks (it refuses a
partition's MAJ:MIN). A path on no block device (tmpfs, overlay, a network file system)
has nothing to throttle and is reported in the notes.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

MOUNTINFO = "/proc/self/mountinfo"
SYS_DEV_BLOCK = "/sys/dev/block"


@dataclass
class Disks:
    devices: list[str] = field(default_factory=list)  # "MAJ:MIN" of whole disks, in first-seen order
    notes: list[str] = field(default_factory=list)


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(mount point, MAJ:MIN, source) of every mount."""
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if sep and len(fields) >= 5 and len(rfields) >= 2:
            found.append((_unescape(fields[4]), fields[2], _unescape(rfields[1])))
    return found


def _mount_of(path: str, mounts: list[tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The mount holding `path`: the last mounted of those with the longest matching mount point."""
    best = None
    for mount in mounts:
        point = mount[0]
        if path == point or path.startswith(point.rstrip("/") + "/") or point == "/":
            if best is None or len(point) >= len(best[0]):
                best = mount
    return best


def _whole_disk(majmin: str, sys_dev_block: str) -> str | None:
    """The disk holding block device `majmin` (itself unless it is a partition), or None
    when it is no block device."""
    base = os.path.join(sys_dev_block, majmin)
    if not os.path.exists(base):
        return None
    if os.path.exists(os.path.join(base, "partition")):
        try:
            with open(os.path.join(os.path.realpath(base), "..", "dev")) as f:
                return f.read().strip()
        except OSError:
            return None
    return majmin


def backing_disks(paths, mountinfo: str | None = None, sys_dev_block: str = SYS_DEV_BLOCK) -> Disks:
    if mountinfo is None:
        with open(MOUNTINFO) as f:
            mountinfo = f.read()
    mounts = _mounts(mountinfo)
    result = Disks()
    for path in paths:
        mount = _mount_of(os.path.realpath(path), mounts)
        if mount is None:
            continue
        point, majmin, source = mount
        disk = _whole_disk(majmin, sys_dev_block)
        if disk is None and source.startswith("/dev/"):
            try:
                st = os.stat(source)
                if stat.S_ISBLK(st.st_mode):
                    disk = _whole_disk(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", sys_dev_block)
            except OSError:
                pass
        if disk is None:
            result.notes.append(f"{path} is on {source} ({point}), no block device: its reads are not limited")
        elif disk not in result.devices:
            result.devices.append(disk)
    return result
