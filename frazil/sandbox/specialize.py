"""Specializing a generic instance: its function's code and layers appear at /code and
/layers/N, read-only, attached from outside by the launcher.

A generic instance (built ahead of time, `enter.Plan.code_dir` None) has gone through every
step of `enter.launch` - cgroup, namespaces, /tmp, /proc, uid, Landlock, seccomp - and waits
for "init" on its channel (a Python zygote child in the loop; a pre-started Node runtime).
Giving it a function is one call here, in the launcher:

  1. open_tree(code_dir), open_tree(layer)...   detached clones of the host directories, made
                                                 read-only, nosuid, nodev (enter.readonly_tree),
                                                 opened in the launcher's own (host) namespace
  2. the instance's mount namespace             from the platform's pidfd of the instance
                                                 (PIDFD_GET_MNT_NAMESPACE; /proc/PID/ns/mnt on
                                                 older kernels, with the pidfd proving the pid
                                                 was still the instance's)
  3. setns() into it, move_mount() each tree    to /code and /layers/N, then setns() back into
     onto its mount point, setns() back          the launcher's own namespace

Why this is safe (the instance holds no privilege at any point, and no privilege is ever
held where user code runs):
- The instance dropped its uid, capabilities and installed seccomp before it was handed to
  the pre-built pool; it never gets privilege back. All privileged work is the launcher's.
- No code of any function has run in the instance yet: the platform specializes an instance
  once, before it sends "init" (which is what imports the handler), so the mount namespace
  the launcher enters is exactly as `enter.launch` left it: a private copy of our read-only
  template, where /code and /layers/N are plain empty directories. Nothing in it can have
  been prepared by a hostile function (a symlink, a mount) to redirect the launcher.
- The launcher only enters the *mount* namespace (not the PID, user or network one), executes
  nothing and opens nothing there; it attaches trees it opened itself, and move_mount does not
  follow a symlink at the target. It returns to its own namespace before reading the next
  request; if it cannot, it exits (the platform starts a new launcher).
- A namespace that is the launcher's own or the template itself is refused: attaching code
  there would show it to every later instance. (The platform never asks for that; this check
  makes a mistake fail loudly instead of leaking one function's code to others.)

Standard library only (runs in the launcher).
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
from dataclasses import dataclass

from frazil.sandbox import syscalls as sc
from frazil.sandbox.enter import code_targets, readonly_tree


class SpecializeError(Exception):
    """The instance could not be given its code; it must be destroyed."""


@dataclass(frozen=True)
class Home:
    """The launcher's own mount namespace, to come back to, and the namespaces never to touch."""

    own_mnt_fd: int
    refused_inodes: frozenset[int]

    @classmethod
    def here(cls, template_fd: int) -> "Home":
        own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        return cls(own, frozenset({os.fstat(own).st_ino, os.fstat(template_fd).st_ino}))


def specialize(home: Home, pidfd: int, pid: int, code_dir: str, layer_dirs: list[str] | tuple[str, ...]) -> None:
    """Attach `code_dir` and `layer_dirs` (host paths) read-only in the instance `pidfd`."""
    trees: list[int] = []
    ns = -1
    try:
        trees.append(readonly_tree(code_dir))
        trees += [readonly_tree(d) for d in layer_dirs]
        ns = _mount_namespace(pidfd, pid)
        if os.fstat(ns).st_ino in home.refused_inodes:
            raise SpecializeError("refused: the target is not an instance's own mount namespace")
        sc.setns(ns, sc.CLONE_NEWNS)
        try:
            for tree, target in zip(trees, code_targets(len(layer_dirs))):
                sc.move_mount_fd(tree, target)
        finally:
            _go_home(home)
    finally:
        for fd in trees:
            os.close(fd)
        if ns >= 0:
            os.close(ns)


def _go_home(home: Home) -> None:
    try:
        sc.setns(home.own_mnt_fd, sc.CLONE_NEWNS)
    except BaseException:
        # Stuck in an instance's namespace: nothing here may be trusted any more. The
        # platform sees the launcher exit and starts a new one.
        os._exit(70)


def _mount_namespace(pidfd: int, pid: int) -> int:
    try:
        return fcntl.ioctl(pidfd, sc.PIDFD_GET_MNT_NAMESPACE)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise SpecializeError("the instance has exited") from None
        if exc.errno not in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    # Older kernels: by pid. The instance is the platform's unreaped child, so its pid is
    # not reused while it lives; the pidfd, still not readable after the open, proves the
    # process was alive - and so still this pid - when the namespace was opened.
    ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if poller.poll(0):
        os.close(ns)
        raise SpecializeError("the instance has exited")
    return ns
