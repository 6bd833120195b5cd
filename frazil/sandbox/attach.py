"""Giving a generic instance its function: the code and layers appear at /code and /layers/N,
read-only, attached from outside by the platform's event loop thread itself.

A generic instance (built ahead of time, `enter.Plan.code_dir` None) has gone through every
step of `enter.launch` - cgroup, namespaces, /tmp, /proc, uid, Landlock, seccomp - and waits
for its go byte before it reads "init" (a Python zygote child; a pre-started Node runtime).
Giving it a function:

  1. open_tree_attr(code_dir),   detached clones of the host directories, read-only, nosuid,
     (layer)...                  nodev (`enter.readonly_tree`)
  2. setns(pidfd, CLONE_NEWNS)   into the instance's mount namespace, through the platform's
                                 pidfd of it (exact: the instance is the platform's unreaped child)
     check, move_mount() each    the root there must be neither the host's nor a template's;
     tree                        trees go to /code and /layers/N
     setns() back home           and back to our working directory (setns moves it to the root)
  3. write the go byte           the runtime may now read "init"

All of it happens within one call, without a suspension: a cold start of a pre-built instance
waits for no other process (~50 us of the event loop; handing it to the launcher process cost
~0.4-0.7 ms of wake-ups and messages). Why a thread of the multi-threaded platform may do it:
setns(CLONE_NEWNS) refuses a thread whose filesystem context (root, cwd, umask) is shared with
other threads, so `attach` first gives its thread a context of its own (unshare(CLONE_FS), again
at each call: a thread started since shares the new one; ~1 us when it is not shared): only
that thread ever changes namespace, and only within `attach`; the others never see the
instance's namespace. (That thread's working directory is its own from then on: a chdir in it
no longer moves the threads started before, and the reverse.)

Why this is safe (the instance holds no privilege at any point, and no privilege is ever held
where user code runs):
- The instance dropped its uid, capabilities and installed seccomp before it was handed to the
  pre-built pool; it never gets privilege back.
- No code of any function has run in the instance yet: the platform specializes an instance
  once, before anything reads "init" (which is what imports the handler), so the mount
  namespace entered is exactly as `enter.launch` left it: a private copy of the read-only
  template, where /code and /layers/N are plain empty directories. Nothing in it can have been
  prepared by a hostile function (a symlink, a mount) to redirect the attach. An instance given
  its layers first (ATTACH_LAYERS) has run its layers' package code before its code is
  attached: code without privilege (no capability, seccomp denies mount, umount, pivot_root and
  new namespaces, the root is read-only), which can change nothing in the mount namespace
  entered the second time, nor learn anything it would not learn in the function's own
  instance (it is that instance's own package code, run a little earlier).
- Inside the instance's namespace the thread executes nothing and opens nothing: one statx of
  "/" and the move_mounts of trees opened (and made read-only) in the host namespace;
  move_mount does not follow a symlink at the target. The garbage collector is held off for
  that window, so that no finalizer of unrelated code runs there (the server's signal handlers
  only set flags). A thread that cannot go home ends the process: nothing it would do after
  could be trusted.
- A namespace whose root is the host's or a template's is refused: attaching code there would
  show it to the platform or to every later instance. (The platform never asks for that; the
  check makes a mistake fail loudly instead of leaking one function's code to others.)
"""
from __future__ import annotations

import errno
import gc
import os
import threading
from typing import Iterable

from frazil.sandbox.helper import rootfs
from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.enter import code_targets

ATTACH_ALL, ATTACH_LAYERS, ATTACH_CODE = "all", "layers", "code"  # what the trees are: code + layers, ...
EXIT_STRANDED = 70  # the process's exit status when a thread could not leave an instance's namespace


class AttachError(Exception):
    """The instance could not be given its trees; it must be destroyed."""


def targets_for(attach: str, trees: int) -> list[str]:
    """Where `trees` trees appear inside for `attach`: ATTACH_ALL the code, then each layer;
    ATTACH_LAYERS the layers only; ATTACH_CODE the code only (its layers came before)."""
    targets = {ATTACH_ALL: code_targets(max(0, trees - 1)), ATTACH_CODE: [rootfs.CODE_DIR],
               ATTACH_LAYERS: [rootfs.layer_dir(i) for i in range(trees)]}.get(attach)
    if not trees or targets is None or len(targets) != trees:
        raise AttachError(f"cannot attach {trees} trees as {attach!r}")
    return targets


class MountAttacher:
    """Attaches trees inside instances' mount namespaces, from the thread that made it."""

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.host_root = sc.mount_id("/")

    def attach(self, pidfd: int, trees: list[int], attach: str, refused_roots: Iterable[int]) -> None:
        """Attach `trees` (detached read-only mounts, in `targets_for(attach)` order) in the
        instance `pidfd`'s mount namespace. AttachError when it exited or is not an instance's."""
        if threading.get_ident() != self._thread:
            raise RuntimeError("MountAttacher.attach runs on the thread that made it")
        targets = targets_for(attach, len(trees))
        refused = {self.host_root, *refused_roots}
        sc.unshare(sc.CLONE_FS)  # this thread's own root, cwd and umask: it may enter a namespace now
        cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
        collecting = gc.isenabled()
        gc.disable()
        try:
            try:
                sc.setns(pidfd, sc.CLONE_NEWNS)
            except OSError as exc:
                if exc.errno == errno.ESRCH:
                    raise AttachError("the instance has exited") from None
                raise AttachError(f"cannot enter the instance's mount namespace: {exc.strerror}") from None
            try:
                if sc.mount_id("/") in refused:
                    raise AttachError("refused: the target is not an instance's own mount namespace")
                for tree, target in zip(trees, targets):
                    try:
                        sc.move_mount_fd(tree, target)
                    except OSError as exc:
                        raise AttachError(f"cannot attach at {target}: {exc.strerror}") from None
            finally:
                self._go_home(cwd)
        finally:
            if collecting:
                gc.enable()
            os.close(cwd)

    def _go_home(self, cwd: int) -> None:
        try:
            sc.setns(self._home, sc.CLONE_NEWNS)
            os.fchdir(cwd)
        except BaseException:  # stuck in an instance's namespace: end the process (see the module doc)
            os.write(2, b"frazil: could not leave an instance's mount namespace; exiting\n")
            os._exit(EXIT_STRANDED)

    def close(self) -> None:
        os.close(self._home)
