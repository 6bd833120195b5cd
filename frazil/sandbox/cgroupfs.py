"""Reading and writing cgroup control files, and finding the cgroup hierarchies this machine
mounts (from /proc/self/mountinfo). Shared by the cgroup interface and both implementations."""
from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"


def write_file(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    with open(path, "rb", buffering=0) as f:
        return f.read().decode()


def keyed(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def makedirs_racing(path: str, attempts: int = 3) -> None:
    """makedirs that survives another platform removing the shared frazil/ parent meanwhile."""
    for attempt in range(attempts):
        try:
            os.makedirs(path, exist_ok=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def cgroup_mounts(mountinfo: str | None = None) -> list[tuple[str, str, set[str]]]:
    """(fstype, mountpoint, controllers) of every cgroup mount, from /proc/self/mountinfo."""
    if mountinfo is None:
        with open(MOUNTINFO) as f:
            mountinfo = f.read()
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        mountpoint = fields[4].replace("\\040", " ")
        controllers = set(rfields[2].split(",")) if rfields[0] == "cgroup" else set()
        if rfields[0] == "cgroup2":
            try:
                controllers = set(read_file(os.path.join(mountpoint, "cgroup.controllers")).split())
            except OSError:
                controllers = set()
        found.append((rfields[0], mountpoint, controllers))
    return found
