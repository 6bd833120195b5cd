"""Starting a runtime process with the fd layout every sandbox promises, and waiting for a
child without a thread per child (a pidfd in the event loop)."""
from __future__ import annotations

import asyncio
import fcntl
import os
import socket

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
    """Reaps one child of this process when it exits, through a pidfd in the event loop."""

    def __init__(self, pid: int):
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        try:
            _, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            status = 0
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if not self._done.done():
            self._done.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._done)


def exit_info_from_status(status: int, oom_killed: bool = False) -> ExitInfo:
    if os.WIFSIGNALED(status):
        return ExitInfo(signal=os.WTERMSIG(status), oom_killed=oom_killed)
    return ExitInfo(exit_code=os.waitstatus_to_exitcode(status), oom_killed=oom_killed)
