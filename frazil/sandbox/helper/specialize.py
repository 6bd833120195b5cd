"""Specializing a generic instance: its function's code and layers appear at /code and
/layers/N, read-only, attached from outside by the launcher.

A generic instance (built ahead of time, `enter.Plan.code_dir` None) has gone through every
step of `enter.launch` - cgroup, namespaces, /tmp, /proc, uid, Landlock, seccomp - and waits
for "init" on its channel (a Python zygote child in the loop; a pre-started Node runtime).
Giving it a function takes two steps:

  1. (platform) open_tree_attr(code_dir),    detached clones of the host directories, read-only,
     (layer)...                              nosuid, nodev (enter.readonly_tree); the platform
                                             is awake anyway, the launcher may not be: each
                                             open_tree costs ~10 us there, ~60 us here
  2. (launcher, `specialize` below)
     setns(pidfd, CLONE_NEWNS)               into the instance's mount namespace, through the
                                             platform's pidfd of it (exact: the instance is the
                                             platform's unreaped child)
     check, move_mount() each tree           the root there must be neither ours nor the
                                             template's; trees go to /code and /layers/N
     setns() back home; write the go byte    the launcher is in its own namespace again before
                                             it reads the next request; a runtime that waits
                                             for its "go" descriptor may now read "init"

Why this is safe (the instance holds no privilege at any point, and no privilege is ever
held where user code runs):
- The instance dropped its uid, capabilities and installed seccomp before it was handed to
  the pre-built pool; it never gets privilege back. All privileged work is the launcher's.
- No code of any function has run in the instance yet: the platform specializes an instance
  once, before anything reads "init" (which is what imports the handler), so the mount
  namespace the launcher enters is exactly as `enter.launch` left it: a private copy of our
  read-only template, where /code and /layers/N are plain empty directories. Nothing in it can
  have been prepared by a hostile function (a symlink, a mount) to redirect the launcher.
  An instance given its layers first (ATTACH_LAYERS) has run its layers' package code before
  its code is attached: code without privilege (no capability, seccomp denies mount, umount,
  pivot_root and new namespaces, the root is read-only), which can change nothing in the mount
  namespace the launcher enters the second time, nor learn anything it would not learn in the
  function's own instance (it is that instance's own package code, run a little earlier).
- The launcher only enters the *mount* namespace (not the PID, user or network one), executes
  nothing and opens nothing there; it attaches the detached trees the platform opened (and
  made read-only) in the host namespace, and move_mount does not follow a symlink at the
  target. It returns to its own namespace before reading the next
  request; if it cannot, it exits (the platform starts a new launcher).
- A namespace whose root is the launcher's own or the template's is refused: attaching code
  there would show it to every later instance. (The platform never asks for that; this check
  makes a mistake fail loudly instead of leaking one function's code to others.)

Standard library only (runs in the launcher).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper import rootfs
from frazil.sandbox.helper.enter import code_targets

GO = b"1"
# Written instead of GO after attaching only the layers (`ATTACH_LAYERS`): the zygote child
# imports the layers' packages and waits for its go byte again (`zygote_child.await_go`).
IMPORT_LAYERS = b"L"
ATTACH_ALL, ATTACH_LAYERS, ATTACH_CODE = "all", "layers", "code"  # what the trees are: code + layers, ...


class SpecializeError(Exception):
    """The instance could not be given its code; it must be destroyed."""


@dataclass(frozen=True)
class Home:
    """The launcher's own mount namespace, to come back to, and the roots never to touch."""

    own_mnt_fd: int
    refused_roots: frozenset[int]  # mount ids of "/" in the launcher's and the template's namespace

    @classmethod
    def here(cls, template_fd: int) -> "Home":
        own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        host_root = sc.mount_id("/")
        sc.setns(template_fd, sc.CLONE_NEWNS)
        try:
            template_root = sc.mount_id("/")
        finally:
            sc.setns(own, sc.CLONE_NEWNS)
        return cls(own, frozenset({host_root, template_root}))


def specialize(home: Home, pidfd: int, trees: list[int], go_fd: int | None = None, attach: str = ATTACH_ALL) -> None:
    """Attach `trees` (detached read-only mounts: the code, then each layer) at /code and
    /layers/N in the instance `pidfd`, then write the go byte to `go_fd` (when given).
    `attach`: ATTACH_LAYERS - the trees are the layers only, and the byte is IMPORT_LAYERS;
    ATTACH_CODE - the tree is the code only, for an instance given its layers that way before."""
    if not trees:
        raise SpecializeError("no code to attach")
    targets = {ATTACH_ALL: code_targets(len(trees) - 1), ATTACH_CODE: [rootfs.CODE_DIR],
               ATTACH_LAYERS: [rootfs.layer_dir(i) for i in range(len(trees))]}.get(attach)
    if targets is None or len(targets) != len(trees):
        raise SpecializeError(f"cannot attach {len(trees)} trees as {attach!r}")
    try:
        sc.setns(pidfd, sc.CLONE_NEWNS)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise SpecializeError("the instance has exited") from None
        raise
    try:
        if sc.mount_id("/") in home.refused_roots:
            raise SpecializeError("refused: the target is not an instance's own mount namespace")
        for tree, target in zip(trees, targets):
            sc.move_mount_fd(tree, target)
    finally:
        _go_home(home)
    if go_fd is not None:
        os.write(go_fd, IMPORT_LAYERS if attach == ATTACH_LAYERS else GO)


def _go_home(home: Home) -> None:
    try:
        sc.setns(home.own_mnt_fd, sc.CLONE_NEWNS)
    except BaseException:
        # Stuck in an instance's namespace: nothing here may be trusted any more. The
        # platform sees the launcher exit and starts a new one.
        os._exit(70)
