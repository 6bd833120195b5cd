"""A thread inside another process's namespace, for one synchronous step: the platform's
event loop thread inside an instance's, the launcher inside its template's.

`inside(pidfd, nstype)` moves the calling thread into the mount or network namespace of the
process `pidfd` refers to (race-free against pid reuse: the instance is the platform's
unreaped child) and back home when the block ends. Only the calling thread moves; the block
must not suspend, so on the event loop's thread nothing else runs meanwhile: every other
socket the platform opens and every path it resolves stays in its own namespaces. Used to give
an instance its code (frazil.sandbox.attach) and to listen on its loopback
(frazil.sandbox.listen): ~10 us of the caller's time, where a helper thread or process would
cost a wake-up and a hand-off (~0.3-0.7 ms per cold start, measured); and by the launcher to
read its template's root mount id (helper.launcher). Standard library only.

Invariants the block relies on:
- the garbage collector is held off inside it, so that no finalizer of unrelated code runs
  there (the server's signal handlers only set flags);
- a mount namespace can be entered only by a thread whose filesystem context (root, cwd,
  umask) is its own: the thread takes one (unshare(CLONE_FS), again at each call, since a
  thread it started meanwhile shares it; ~1 us when unshared already). From then on a chdir in
  that thread no longer moves the threads started before, and the reverse. setns() leaves the
  thread at the namespace's root: its working directory is restored on the way home;
- a thread that cannot go home ends the process: whatever it did next (open a socket, resolve
  a path) would happen in another process's namespace.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import os
from typing import Iterator

from frazil.sandbox.helper import syscalls as sc

EXIT_STRANDED = 70  # the process's exit status when a thread could not leave another namespace
_NAMES = {sc.CLONE_NEWNS: "mnt", sc.CLONE_NEWNET: "net"}


class Gone(OSError):
    """The process has exited: there is no namespace to enter."""


@contextlib.contextmanager
def inside(pidfd: int, nstype: int) -> Iterator[None]:
    """Run the block with this thread in `pidfd`'s namespace of type `nstype` (CLONE_NEWNS or
    CLONE_NEWNET; `pidfd` may also be a namespace's own fd). Raises Gone when the process has
    exited, OSError when it cannot be entered."""
    name = _NAMES[nstype]
    cwd = None
    if nstype == sc.CLONE_NEWNS:
        sc.unshare(sc.CLONE_FS)
        cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    home = os.open(f"/proc/thread-self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            sc.setns(pidfd, nstype)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise Gone(errno.ESRCH, "the process has exited") from None
            raise
        try:
            yield
        finally:
            _go_home(home, nstype, cwd)
    finally:
        if collecting:
            gc.enable()
        os.close(home)
        if cwd is not None:
            os.close(cwd)


def _go_home(home: int, nstype: int, cwd: int | None) -> None:
    try:
        sc.setns(home, nstype)
        if cwd is not None:
            os.fchdir(cwd)
    except BaseException:  # stranded in another namespace: see the module doc
        os.write(2, b"frazil: a thread could not leave another process's namespace; exiting\n")
        os._exit(EXIT_STRANDED)
