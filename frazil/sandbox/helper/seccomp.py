"""The instance's seccomp filter: a classic-BPF program built here, loaded with seccomp(2).

Policy (a deny list: the runtime, ImageMagick and Ghostscript need the ordinary rest):
- anything but the native x86_64 ABI (i386 through int 0x80, x32 numbers) -> EPERM;
- socket() of any family but AF_UNIX, AF_INET and AF_INET6 -> EPERM (no netlink, no packet
  sockets). An instance's network namespace holds only `lo` (netns.py), so INET sockets reach
  nothing but its own loopback, where the platform's egress proxy listens (frazil.sdk.egress);
  the SDK talks over fd 3;
- clone() asking for a new namespace -> EPERM; clone3() -> ENOSYS, because its flags sit
  behind a pointer BPF cannot read, and libc then falls back to clone();
- the calls in DENIED -> EPERM: namespaces, mounts, tracing other processes, kernel keys,
  eBPF, perf, kexec, modules, reboot, swap, io_uring (it can open sockets behind the
  filter's back), and a few more a container never needs.
Denials answer EPERM rather than killing, so a library that probes (e.g. for IPv6) gets an
error it can handle. Allowed calls cost nothing per call: the kernel caches syscalls whose
answer never depends on their arguments.

Standard library only (runs in the launcher).
"""
from __future__ import annotations

import ctypes
import errno
import socket
import struct

from frazil.sandbox.helper import syscalls as sc

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000

# x86_64 numbers of the calls answered with EPERM.
DENIED: dict[str, int] = {
    "ptrace": 101,
    "syslog": 103,
    "uselib": 134,
    "vhangup": 153,
    "pivot_root": 155,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "fanotify_init": 300,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "process_madvise": 440,
    "mount_setattr": 442,
    "quotactl_fd": 443,
    "open_tree_attr": 467,
}
NR_SOCKET = 41
NR_CLONE = 56
NR_CLONE3 = 435
# Namespace bits of clone()'s flags (CLONE_NEWTIME shares its bit with the exit signal there).
CLONE_NAMESPACE_FLAGS = sc.ALL_NAMESPACES & ~sc.CLONE_NEWTIME

# classic BPF opcodes and seccomp return values
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
_OFF_NR = 0
_OFF_ARCH = 4
_OFF_ARG0_LOW = 16  # seccomp_data.args[0], low 32 bits (little-endian)
_INSN = struct.Struct("=HBBI")


INSTANCE_SOCKET_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)


def build_program(denied: dict[str, int] = DENIED,
                  socket_families: tuple[int, ...] = INSTANCE_SOCKET_FAMILIES) -> bytes:
    """The filter as packed `struct sock_filter` instructions. `socket_families`: the
    families socket() may create (in a namespace that holds only `lo`: an instance's, a
    dependency build's, see frazil.sandbox.helper.build_jail)."""
    # Instructions are (code, jt, jf, k); jt/jf may name a label, resolved below (BPF jumps
    # only forward, so every label sits after the jumps that use it).
    prog: list[tuple] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 0, "deny", AUDIT_ARCH_X86_64),
        (_LD_W_ABS, 0, 0, _OFF_NR),
        (_JGE_K, "deny", 0, X32_SYSCALL_BIT),
        (_JEQ_K, "socket", 0, NR_SOCKET),
        (_JEQ_K, "clone", 0, NR_CLONE),
        (_JEQ_K, "enosys", 0, NR_CLONE3),
    ]
    prog += [(_JEQ_K, "deny", 0, nr) for nr in sorted(set(denied.values()))]
    prog += [
        (_RET_K, 0, 0, RET_ALLOW),
        "socket",
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
        *[(_JEQ_K, "allow", 0, family) for family in socket_families[:-1]],
        (_JEQ_K, "allow", "deny", socket_families[-1]),
        "clone",
        (_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
        (_JSET_K, "deny", "allow", CLONE_NAMESPACE_FLAGS),
        "allow",
        (_RET_K, 0, 0, RET_ALLOW),
        "enosys",
        (_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS),
        "deny",
        (_RET_K, 0, 0, RET_ERRNO | errno.EPERM),
    ]
    labels: dict[str, int] = {}
    insns: list[tuple] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = bytearray()
    for index, (code, jt, jf, k) in enumerate(insns):
        out += _INSN.pack(code, _offset(labels, jt, index), _offset(labels, jf, index), k)
    return bytes(out)


def _offset(labels: dict[str, int], target, index: int) -> int:
    if not isinstance(target, str):
        return target
    offset = labels[target] - index - 1
    if not 0 <= offset <= 255:
        raise ValueError(f"BPF jump to {target!r} out of range ({offset})")
    return offset


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """A program built once per platform; `install()` loads it into the calling process."""

    def __init__(self, program: bytes | None = None):
        self.program = build_program() if program is None else program
        self._buffer = ctypes.create_string_buffer(self.program, len(self.program))
        self._fprog = _SockFprog(len(self.program) // _INSN.size, ctypes.addressof(self._buffer))

    def __len__(self) -> int:
        return len(self.program) // _INSN.size

    def install(self) -> None:
        """no_new_privs, then the filter: from here on only exec and plain work remain."""
        sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        sc.seccomp_set_filter(ctypes.byref(self._fprog))
