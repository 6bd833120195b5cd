"""Giving a generic instance its function: the code and layers appear at /code and /layers/N,
read-only, attached from outside by the platform's event loop thread itself.

A generic instance (built ahead of time, `enter.Plan.code_dir` None) has gone through every
step of `enter.launch` - cgroup, namespaces, /tmp, /proc, uid, Landlock, seccomp - and waits
for its go byte before it reads "init" (a Python zygote child; a pre-started Node runtime).
Giving it a function:

  1. open_tree_attr(code_dir),   detached clones of the host directories, read-only, nosuid,
     (layer)...                  nodev (`enter.readonly_tree`)
  2. into the instance's mount   `visit.inside` (the platform's own thread, for this one step)
     namespace
     check, move_mount() each    the root there must be neither the host's nor a template's;
     tree                        trees go to /code and /layers/N
  3. write the go byte           the runtime may now read "init" (frazil.sandbox.handover)

All of it happens within one call, without a suspension: a cold start of a pre-built instance
waits for no other process (~50 us of the event loop; handing it to the launcher process cost
~0.4-0.7 ms of wake-ups and messages).

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
  move_mount does not follow a symlink at the target. (`visit.inside` says what keeps anything
  else from running there, and what happens to a thread that cannot go home.)
- A namespace whose root is the host's or a template's is refused: attaching code there would
  show it to the platform or to every later instance. (The platform never asks for that; the
  check makes a mistake fail loudly instead of leaking one function's code to others.)
"""
from __future__ import annotations

from typing import Iterable

from frazil.sandbox.helper import rootfs
from frazil.sandbox.helper import syscalls as sc
from frazil.sandbox.helper.enter import code_targets
from frazil.sandbox.helper.visit import Gone, inside

ATTACH_ALL, ATTACH_LAYERS, ATTACH_CODE = "all", "layers", "code"  # what the trees are: code + layers, ...


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


def attach_trees(pidfd: int, trees: list[int], attach: str, refused_roots: Iterable[int]) -> None:
    """Attach `trees` (detached read-only mounts, in `targets_for(attach)` order) in the mount
    namespace of the instance `pidfd`. AttachError when it exited, or its root is one of
    `refused_roots` (mount ids: the host's, the templates')."""
    targets = targets_for(attach, len(trees))
    try:
        with inside(pidfd, sc.CLONE_NEWNS):
            if sc.mount_id("/") in refused_roots:
                raise AttachError("refused: the target is not an instance's own mount namespace")
            for tree, target in zip(trees, targets):
                try:
                    sc.move_mount_fd(tree, target)
                except OSError as exc:
                    raise AttachError(f"cannot attach at {target}: {exc.strerror}") from None
    except Gone:
        raise AttachError("the instance has exited") from None
    except OSError as exc:  # setns
        raise AttachError(f"cannot enter the instance's mount namespace: {exc.strerror}") from None
