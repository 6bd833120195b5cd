"""Starting a runtime process with the fd layout every sandbox promises, and waiting for a
child without a thread per child (a pidfd in the event loop), or for a descriptor to have
something to read (`until_readable`)."""
from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import socket
from typing import Callable

from frazil.runtimes import CHANNEL_FD
from frazil.sandbox.base import ExitInfo


def spawn_runtime(argv: list[str], env: dict[str, str], *, setsid: bool) -> tuple[int, socket.socket, int]:
    """posix_spawn `argv` with stdin=/dev/null, stdout+stderr=one pipe, fd 3=channel.

    Returns (pid, our channel end, read end of the output pipe). The runtime changes to
    its code directory itself when it receives "init"."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    # dup2(fd, fd) would keep O_CLOEXEC, so make sure no source is numbered 0-3.
    theirs_fd = _above(theirs.fileno(), CHANNEL_FD)
    out_w_fd = _above(out_w, CHANNEL_FD)
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w_fd, 1),
                (os.POSIX_SPAWN_DUP2, out_w_fd, 2),
                (os.POSIX_SPAWN_DUP2, theirs_fd, CHANNEL_FD),
            ],
            setsid=setsid,
        )
    finally:
        for fd in (theirs_fd, out_w_fd, out_w):
            os.close(fd)
        theirs.close()
    ours.setblocking(False)
    os.set_blocking(out_r, False)
    return pid, ours, out_r


def _above(fd: int, floor: int) -> int:
    """A duplicate of `fd` numbered above `floor` (the original stays open)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor + 1)


class ChildWaiter:
    """A child of this process, watched through a pidfd in the event loop and reaped the
    moment it exits. Only we reap it, so its pid cannot be reused while `pidfd` is open: the
    pidfd is exact, for signals or to hand to another process, until the child is reaped.

    `on_exit(status)` runs first, in the event loop, before anyone waiting resumes (e.g. to
    read the child's cgroup before it is removed)."""

    def __init__(self, pid: int, on_exit: Callable[[int], None] | None = None):
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._on_exit_cb = on_exit
        self.exited: asyncio.Future[int] = self._loop.create_future()  # the wait status
        self.pidfd: int | None = os.pidfd_open(pid)
        self._loop.add_reader(self.pidfd, self._on_exit)

    def _on_exit(self) -> None:
        try:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            reaped, status = self.pid, 0
        if reaped == 0:  # not gone yet after all
            return
        self._loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = None
        if self._on_exit_cb is not None:
            self._on_exit_cb(status)
        if not self.exited.done():
            self.exited.set_result(status)

    def kill(self) -> None:
        """SIGKILL the child unless it is gone. Never raises."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass

    async def wait(self, timeout_s: float | None = None) -> int:
        """The wait status; after `timeout_s` the child is killed and then waited for."""
        if timeout_s is None:
            return await asyncio.shield(self.exited)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout_s)
        except asyncio.TimeoutError:
            self.kill()
            return await asyncio.shield(self.exited)


async def until_readable(fd: int, timeout_s: float | None = None) -> None:
    """Until `fd` has something to read (data, or its end) or `timeout_s` has passed
    (asyncio.TimeoutError), in the event loop; nothing is read."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        await asyncio.wait_for(readable, timeout_s)
    finally:
        loop.remove_reader(fd)


def exit_info_from_status(status: int, oom_killed: bool = False) -> ExitInfo:
    if os.WIFSIGNALED(status):
        return ExitInfo(signal=os.WTERMSIG(status), oom_killed=oom_killed)
    return ExitInfo(exit_code=os.waitstatus_to_exitcode(status), oom_killed=oom_killed)
