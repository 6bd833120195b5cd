"""Thin ctypes wrappers for the Linux system calls the isolated sandbox needs (x86_64).

Every wrapper raises OSError(errno, "<call>: <reason>") on failure and never asserts: these
run between clone and exec, where the only way to report is an exception the caller turns
into a message on the error pipe. Arguments are converted to C types here so a 64-bit
value is never squeezed into a C int by ctypes' variadic call.

Standard library only (the launcher process imports this with `python -I -S`).
"""
from __future__ import annotations

import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# clone() must keep the GIL held across the call: the child wakes up inside this very call
# and must find the interpreter exactly as the parent left it (PyDLL never releases the GIL).
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long

# --- system call numbers (x86_64) -----------------------------------------------------
NR = {
    "clone": 56,
    "clone3": 435,
    "capset": 126,
    "pivot_root": 155,
    "prctl": 157,
    "mount": 165,
    "umount2": 166,
    "sethostname": 170,
    "unshare": 272,
    "setns": 308,
    "seccomp": 317,
    "open_tree": 428,
    "move_mount": 429,
    "close_range": 436,
    "mount_setattr": 442,
    "statx": 332,
    "open_tree_attr": 467,
    "landlock_create_ruleset": 444,
    "landlock_restrict_self": 446,
}

# --- namespaces (clone/unshare/setns flags) ---------------------------------------------
CLONE_NEWTIME = 0x00000080
CLONE_FS = 0x00000200  # (unshare: a filesystem context of its own, see helper/visit.py)
CLONE_PARENT = 0x00008000
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_INTO_CGROUP = 0x200000000  # clone3 only
CSIGNAL = 0xFF  # the exit signal, in the low byte of legacy clone's flags
ALL_NAMESPACES = (CLONE_NEWTIME | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
                  | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

# --- mounts ---------------------------------------------------------------------------
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 0x2

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

# --- prctl ----------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- seccomp / landlock ---------------------------------------------------------------
SECCOMP_SET_MODE_FILTER = 1
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 0x1
LANDLOCK_SCOPE_SIGNAL = 0x2

CLOSE_RANGE_CLOEXEC = 0x4
STATX_MNT_ID = 0x1000
_STATX_MNT_ID_OFFSET = 0x90  # struct statx.stx_mnt_id
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _arg(value):
    if value is None:
        return ctypes.c_void_p(None)
    if isinstance(value, bool):
        return ctypes.c_long(int(value))
    if isinstance(value, int):
        return ctypes.c_long(value)
    if isinstance(value, str):
        return ctypes.c_char_p(os.fsencode(value))
    if isinstance(value, bytes):
        return ctypes.c_char_p(value)
    return value  # already a ctypes object (byref, pointer, buffer)


def _call(name: str, *args, libc=_libc) -> int:
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(NR[name]), *(_arg(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


# --- processes and namespaces ---------------------------------------------------------

_NR_CLONE = ctypes.c_long(NR["clone"])
_NULL = ctypes.c_void_p(None)


def clone(flags: int) -> int:
    """fork() with clone flags (namespaces, CLONE_PARENT); 0 in the child, the pid in the parent.

    The child continues in Python without CPython's after-fork hooks, so only call this
    from a single-threaded process that holds no locks (the launcher), and leave the child
    through exec or os._exit. Kept lean: after the clone every page either side writes
    first costs a copy-on-write fault (2-3.6 us each on this kind of machine)."""
    pid = _pylibc.syscall(_NR_CLONE, ctypes.c_long(flags), _NULL, _NULL, _NULL, _NULL)
    if pid == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


_NR_CLONE3 = ctypes.c_long(NR["clone3"])
_CLONE_ARGS_FIELDS = 11  # struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2)


def clone_into_cgroup(flags: int, cgroup_fd: int) -> int:
    """clone() whose child starts in the cgroup v2 directory `cgroup_fd` (clone3 with
    CLONE_INTO_CGROUP): the child is never anywhere else, and nothing moves it, so no lock
    is taken that a cgroup.procs write would take (the global threadgroup rwsem, whose
    writer waits for an RCU grace period). `flags` as for `clone`, exit signal included;
    same rules for the child."""
    args = (ctypes.c_uint64 * _CLONE_ARGS_FIELDS)()
    # clone3 refuses an exit signal with CLONE_PARENT (the child gets the caller's own).
    args[0] = (flags & ~CSIGNAL) | CLONE_INTO_CGROUP
    args[4] = 0 if flags & CLONE_PARENT else flags & CSIGNAL
    args[10] = cgroup_fd
    pid = _pylibc.syscall(_NR_CLONE3, ctypes.byref(args), ctypes.c_long(ctypes.sizeof(args)))
    if pid == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"clone3: {os.strerror(err)}")
    return pid


def unshare(flags: int) -> None:
    _call("unshare", flags)


def setns(fd: int, nstype: int) -> None:
    _call("setns", fd, nstype)


def sethostname(name: str) -> None:
    data = name.encode()
    _call("sethostname", data, len(data))


# --- mounts ---------------------------------------------------------------------------

def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _call("mount", source, target, fstype, flags, data)


def umount2(target: str, flags: int = 0) -> None:
    _call("umount2", target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    _call("pivot_root", new_root, put_old)


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, dirfd: int = AT_FDCWD) -> int:
    """A detached bind mount of `path` (as seen now, in this mount namespace) as an fd."""
    return _call("open_tree", dirfd, path, flags)


def open_tree_attr(path: str, attr_set: int) -> int:
    """open_tree(OPEN_TREE_CLONE) with mount attributes set, in one call (Linux 6.15);
    raises OSError(ENOSYS) on older kernels."""
    attr = MountAttr(attr_set, 0, 0, 0)
    return _call("open_tree_attr", AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, ctypes.byref(attr),
                 ctypes.sizeof(attr))


def mount_id(path: str) -> int:
    """The id of the mount `path` is on, in the caller's mount namespace (statx STATX_MNT_ID)."""
    buf = ctypes.create_string_buffer(256)
    _call("statx", AT_FDCWD, path, 0, STATX_MNT_ID, buf)
    return struct.unpack_from("=Q", buf, _STATX_MNT_ID_OFFSET)[0]


def move_mount_fd(tree_fd: int, target: str) -> None:
    """Attach a detached tree from `open_tree` at `target` in the current mount namespace."""
    _call("move_mount", tree_fd, b"", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path: str | bytes, attr_set: int, *, dirfd: int = AT_FDCWD, flags: int = 0) -> None:
    """Set per-mount flags (MOUNT_ATTR_*), e.g. read-only; AT_RECURSIVE for a whole tree."""
    attr = MountAttr(attr_set, 0, 0, 0)
    _call("mount_setattr", dirfd, path, flags, ctypes.byref(attr), ctypes.sizeof(attr))


def mount_setattr_fd(fd: int, attr_set: int, *, recursive: bool = False) -> None:
    mount_setattr(b"", attr_set, dirfd=fd, flags=AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0))


# --- privileges -----------------------------------------------------------------------

def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _call("prctl", option, arg2, arg3, arg4, arg5)


def drop_bounding_set(last_cap: int) -> None:
    for cap in range(last_cap + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def clear_capabilities() -> None:
    """Empty effective, permitted and inheritable sets (lowering never needs privilege)."""
    header = struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two __user_cap_data_struct of three u32, all zero
    _call("capset", ctypes.c_char_p(header), ctypes.c_char_p(data))


def last_capability() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


# --- seccomp and landlock -------------------------------------------------------------

def seccomp_set_filter(prog_ref) -> None:
    """Install a classic-BPF filter; `prog_ref` is ctypes.byref(sock_fprog)."""
    _call("seccomp", SECCOMP_SET_MODE_FILTER, 0, prog_ref)


class LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


def landlock_abi_version() -> int:
    """The Landlock ABI the kernel offers; 0 when Landlock is missing or disabled."""
    try:
        return _call("landlock_create_ruleset", None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except OSError:
        return 0


def landlock_scope_ruleset(scoped: int) -> int:
    """A ruleset fd that only scopes IPC (abstract Unix sockets, signals); ABI 6 or later."""
    attr = LandlockRulesetAttr(0, 0, scoped)
    return _call("landlock_create_ruleset", ctypes.byref(attr), ctypes.sizeof(attr), 0)


def landlock_restrict_self(ruleset_fd: int) -> None:
    _call("landlock_restrict_self", ruleset_fd, 0)


# --- file descriptors -----------------------------------------------------------------

def cloexec_from(first_fd: int) -> None:
    """Mark every descriptor >= first_fd close-on-exec (one syscall, whatever is open)."""
    _call("close_range", first_fd, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC)


def close_from(first_fd: int) -> None:
    """Close every descriptor >= first_fd."""
    _call("close_range", first_fd, 0xFFFFFFFF, 0)
