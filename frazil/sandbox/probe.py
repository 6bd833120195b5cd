"""Start-up probe: can this machine run the isolated sandbox, and if not, what is missing.

Every check is cheap and side-effect free; the launcher's start (which really builds the
template namespace) is the final proof. `ProbeResult.message()` names each missing piece so
an operator knows what to fix, or that FRAZIL_SANDBOX=plain runs without isolation.
"""
from __future__ import annotations

import errno
import os
import platform
from dataclasses import dataclass, field

from frazil.sandbox import cgroupfs, cgroups
from frazil.sandbox.cgroup_v1 import V1Backend
from frazil.sandbox.cgroup_v2 import V2Backend
from frazil.sandbox.helper import landlock
from frazil.sandbox.helper import syscalls as sc

NAMESPACES = ("mnt", "pid", "ipc", "uts", "net", "cgroup")
# capability number -> name, for the ones the launcher and the child use
CAPABILITIES = {5: "CAP_KILL", 6: "CAP_SETGID", 7: "CAP_SETUID", 8: "CAP_SETPCAP", 18: "CAP_SYS_CHROOT",
                21: "CAP_SYS_ADMIN", 27: "CAP_MKNOD"}


@dataclass
class ProbeResult:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cgroups: cgroups.CgroupBackend | None = None
    landlock_abi: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        if self.ok:
            return "the isolated sandbox can run here"
        return ("the isolated sandbox cannot run on this machine: " + "; ".join(self.problems)
                + ". Set FRAZIL_SANDBOX=plain to run functions without isolation (development only).")


def probe(scope: str) -> ProbeResult:
    result = ProbeResult()
    _check_arch(result)
    _check_privileges(result)
    _check_namespaces(result)
    _check_cgroups(result, scope)
    _check_syscalls(result)
    result.landlock_abi = landlock.abi_version()
    if result.landlock_abi < landlock.SCOPE_ABI:
        result.notes.append(
            f"Landlock ABI {result.landlock_abi} cannot scope abstract Unix sockets and signals (needs "
            f"{landlock.SCOPE_ABI}): instances are kept apart by their namespaces alone")
    return result


def _check_arch(result: ProbeResult) -> None:
    if platform.system() != "Linux":
        result.problems.append(f"Linux is required (this is {platform.system()})")
    elif platform.machine() != "x86_64":
        result.problems.append(f"the seccomp filter is built for x86_64 (this is {platform.machine()})")


def _capabilities() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _check_privileges(result: ProbeResult) -> None:
    if os.geteuid() != 0:
        result.problems.append(f"root is required to create namespaces and cgroups (running as uid {os.geteuid()})")
        return
    effective = _capabilities()
    missing = [name for bit, name in CAPABILITIES.items() if not effective & (1 << bit)]
    if missing:
        result.problems.append(f"missing capabilities {', '.join(missing)}")


def _check_namespaces(result: ProbeResult) -> None:
    missing = [ns for ns in NAMESPACES if not os.path.exists(f"/proc/self/ns/{ns}")]
    if missing:
        result.problems.append(f"the kernel lacks namespaces: {', '.join(missing)}")


def discover(scope: str, found=None) -> cgroups.CgroupBackend | None:
    """The v2 backend when a v2 hierarchy has memory, cpu and pids; else v1; else None."""
    found = cgroupfs.cgroup_mounts() if found is None else found
    return V2Backend.discover(scope, found) or V1Backend.discover(scope, found)


def _check_cgroups(result: ProbeResult, scope: str) -> None:
    found = cgroupfs.cgroup_mounts()
    backend = discover(scope, found)
    if backend is None:
        have = sorted({c for fstype, _, cs in found for c in cs})
        result.problems.append(
            "no cgroup hierarchy offers the memory, cpu and pids controllers (neither a cgroup v2 mount "
            f"with them enabled nor cgroup v1 mounts); available: {', '.join(have) or 'none'}")
        return
    for d in backend.scope_dirs():
        parent = os.path.dirname(os.path.dirname(d))
        if not os.access(parent, os.W_OK):
            result.problems.append(f"cannot write to cgroup hierarchy {parent}")
            return
    result.cgroups = backend


def _check_syscalls(result: ProbeResult) -> None:
    try:
        if sc.prctl(sc.PR_GET_SECCOMP) not in (0, 2):
            result.problems.append("seccomp reports an unexpected mode")
    except OSError as exc:
        result.problems.append(f"seccomp is not available ({exc.strerror})")
    # Called with an invalid descriptor: any error but ENOSYS proves the call exists.
    for name, call in (("open_tree", lambda: sc.open_tree("", dirfd=-1)),
                       ("mount_setattr", lambda: sc.mount_setattr("", 0, dirfd=-1)),
                       ("close_range", lambda: sc.cloexec_from(0xFFFFFFF0))):
        try:
            call()
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                result.problems.append(f"the kernel lacks {name}() (Linux 5.12 or later is needed)")
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        result.problems.append(f"pidfd_open() is not available ({exc.strerror})")
