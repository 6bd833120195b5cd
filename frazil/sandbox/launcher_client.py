"""The platform's side of the launcher (see `frazil.sandbox.launcher` for the wire).

One `LauncherClient` starts the launcher process, sends it spawn requests from the event
loop without blocking (replies are matched by id, so concurrent creates pipeline), and
notices when it dies: every pending request then fails with `LauncherGone`.

Fields are only touched from the event loop thread that called `start()`; that thread
must outlive the launcher, because PR_SET_PDEATHSIG follows the thread that spawned it.
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import sys
from pathlib import Path

from frazil.sandbox import launcher as wire

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding frazil/
BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from frazil.sandbox.launcher import main; main()")


class LauncherError(Exception):
    """The launcher refused a request or could not start."""


class LauncherGone(LauncherError):
    """The launcher process exited."""


def _interpreter() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


class LauncherClient:
    def __init__(self, config: dict):
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self.pid: int | None = None
        self._pidfd: int | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._ready: asyncio.Future | None = None
        self._exited: asyncio.Future | None = None  # the launcher's wait status, once reaped
        self.info: dict = {}

    @property
    def alive(self) -> bool:
        return self._sock is not None

    async def start(self, timeout_s: float = 30.0) -> dict:
        """Spawn the launcher and wait until it has prepared; returns its "ready" message."""
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs_fd = fcntl.fcntl(theirs.fileno(), fcntl.F_DUPFD_CLOEXEC, wire.CONTROL_FD + 1)
        interpreter = _interpreter()
        config = {**self._config, "platform_pid": os.getpid()}
        argv = [interpreter, "-I", "-S", "-B", "-c", BOOTSTRAP.format(root=PACKAGE_PARENT), json.dumps(config)]
        try:
            self.pid = os.posix_spawn(interpreter, argv, {"LANG": "C.UTF-8"}, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, theirs_fd, wire.CONTROL_FD),
            ], setsid=True)
        finally:
            os.close(theirs_fd)
            theirs.close()
        self._pidfd = os.pidfd_open(self.pid)
        self._exited = self._loop.create_future()
        self._loop.add_reader(self._pidfd, self._on_exit)
        ours.setblocking(False)
        self._sock = ours
        self._ready = self._loop.create_future()
        self._loop.add_reader(ours.fileno(), self._on_readable)
        try:
            message = await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except asyncio.TimeoutError:
            await self.close()
            raise LauncherError(f"the sandbox launcher did not start within {timeout_s:g} s") from None
        except LauncherGone:
            await self.close()
            raise LauncherError("the sandbox launcher exited while starting (see its stderr)") from None
        if message.get("type") != wire.READY:
            await self.close()
            raise LauncherError(message.get("error") or f"unexpected message from the launcher: {message}")
        self.info = message
        return message

    async def spawn(self, request: dict, fds: list[int], timeout_s: float = 10.0) -> int:
        """Send one spawn request with its descriptors; returns the instance's pid."""
        if self._sock is None:
            raise LauncherGone("the sandbox launcher is not running")
        self._next_id += 1
        request_id = self._next_id
        future = self._loop.create_future()
        self._pending[request_id] = future
        try:
            await self._send(json.dumps({**request, "type": wire.SPAWN, "id": request_id}).encode(), fds)
            reply = await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            raise LauncherError(f"the sandbox launcher did not answer within {timeout_s:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if reply.get("type") != wire.SPAWNED:
            raise LauncherError(reply.get("error") or f"unexpected reply {reply}")
        return int(reply["pid"])

    async def _send(self, data: bytes, fds: list[int]) -> None:
        while True:
            if self._sock is None:
                raise LauncherGone("the sandbox launcher exited")
            try:
                socket.send_fds(self._sock, [data], fds)
                return
            except BlockingIOError:
                await self._writable()
            except (BrokenPipeError, ConnectionResetError):
                self._gone()
                raise LauncherGone("the sandbox launcher exited") from None

    async def _writable(self) -> None:
        future = self._loop.create_future()
        fd = self._sock.fileno()

        def ready() -> None:
            self._loop.remove_writer(fd)
            if not future.done():
                future.set_result(None)

        self._loop.add_writer(fd, ready)
        try:
            await future
        finally:
            self._loop.remove_writer(fd)

    def _on_readable(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(wire.MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            message = json.loads(data)
            if message.get("type") in (wire.READY, wire.FAILED):
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(message)
                continue
            future = self._pending.get(message.get("id"))
            if future is not None and not future.done():
                future.set_result(message)

    def _on_exit(self) -> None:
        """The launcher exited: reap it at once (it is our child) and fail what waits on it."""
        try:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = self.pid, 0
        if reaped == 0:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        self._gone()
        if not self._exited.done():
            self._exited.set_result(status)

    def _gone(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for future in [self._ready, *self._pending.values()]:
            if future is not None and not future.done():
                future.set_exception(LauncherGone("the sandbox launcher exited"))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the control socket (the launcher exits on EOF) and wait until it is reaped."""
        if self._sock is not None:
            self._gone()
        if self._ready is not None and self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # mark retrieved
        if self.pid is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout_s)
        except asyncio.TimeoutError:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            await self._exited
